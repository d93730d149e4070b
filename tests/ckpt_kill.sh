#!/usr/bin/env bash
# Crash loop: a 4-rank job under `swiftmoe run` is SIGKILLed again and again —
# by this script, at random moments, on a random rank, and by the test build's
# kill points inside the checkpoint write path (SMOE_KILL_RANDOM: any chunk
# write, before or after a manifest, with a small probability) — and restarted
# each time with --resume auto. Checks:
#  - the job ends (exit 0) after several restarts, with the final weights and
#    every step's loss bitwise equal to an uninterrupted run's (a step missing
#    from metrics.jsonl after a resume fails this too);
#  - every restart resumes from a checkpoint at least as new as the last one
#    announced complete on every rank before the kill (no completed step before
#    the last complete checkpoint is ever lost); with LOG=1 the job logs its
#    gradients (checkpoint.log_gradients = on) and every restart resumes at a
#    step no older than the last one announced logged on every rank;
#  - the steps each resume lost, and their mean, are printed (the figure to
#    compare with and without the log);
#  - `swiftmoe ckpt verify` finds no fault at the end.
# Diagnosable and bounded: it prints each phase, kill and restart as it goes;
# every wait has a deadline (the whole test ends within DEADLINE seconds, under
# ctest's 300); the job runs with `swiftmoe run --stall-timeout`, so a hung
# attempt is stopped and restarted. On a failure, a deadline, or a SIGTERM
# (ctest's timeout) it prints the tail of the supervisor's log and the
# processes still running, and keeps its folder.
# usage: [LOG=1] [STEPS=N (default 240)] ckpt_kill.sh path/to/swiftmoe_f64 (the test build
# with kill points)
set -uo pipefail
bin=$1
DEADLINE=${DEADLINE:-260}
tmp=$(mktemp -d)
t0=$SECONDS
keep=${KEEP:-}
say() { printf '[%3ds] %s\n' $((SECONDS - t0)) "$*"; }

# what is running, and the supervisor's log: for a failure, a deadline, a signal
diagnose() {
  say "diagnostics: $1"
  if [ -f "$tmp/chaos.log" ]; then
    echo "--- last 30 lines of the supervisor's log ($tmp/chaos.log):"
    tail -30 "$tmp/chaos.log"
  fi
  echo "--- processes of this test:"
  ps -eo pid,ppid,pgid,stat,etime,wchan:20,args --forest | grep -F -e "$tmp" | grep -v grep || true
  keep=1
}
cleanup() {
  pkill -9 -f "$tmp/" 2>/dev/null
  if [ -n "$keep" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'diagnose "interrupted by a signal after $((SECONDS - t0)) s (ctest timeout?)"; exit 1' TERM INT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none -np 4)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=8 --set training.steps=${STEPS:-240} --set training.warmup_steps=5
      --set training.eval_every=0 --set training.eval_windows=4 --set metrics.progress=off
      --set training.threads=1 --set checkpoint.interval=3 --set checkpoint.full_every=3
      --set checkpoint.keep=2)
# LOG=1: with the gradient log, whose resumes must come no earlier than the
# last step announced on disk on every rank
[ -n "${LOG:-}" ] && args+=(--set checkpoint.log_gradients=on)
fail=0

say "reference run (4 ranks, uninterrupted)"
if ! timeout -k 5 120 "${mpi[@]}" "$bin" train "${args[@]}" --out "$tmp/ref" 2>"$tmp/ref.log"; then
  diagnose "the reference run failed or timed out"; tail -5 "$tmp/ref.log"; exit 1
fi
say "reference run done"

d=$tmp/chaos
SMOE_KILL_RANDOM=0.004 "$bin" run --max-restarts 40 --backoff 0 --stall-timeout 60 -- \
  "${mpi[@]}" "$bin" train "${args[@]}" --out "$d" >"$tmp/chaos.log" 2>&1 &
sup=$!
say "crash loop started (supervisor pid $sup)"
kills=0 reported=0
# report_restarts: print the supervisor's new restart lines
report_restarts() {
  local lines
  mapfile -t lines < <(grep -E "^swiftmoe run: attempt|kill point" "$tmp/chaos.log" 2>/dev/null)
  while [ "$reported" -lt "${#lines[@]}" ]; do say "  ${lines[$reported]}"; reported=$((reported + 1)); done
}
while kill -0 $sup 2>/dev/null; do
  if [ $((SECONDS - t0)) -ge "$DEADLINE" ]; then
    diagnose "deadline: the supervised job still runs after $DEADLINE s"; exit 1
  fi
  report_restarts
  if [ $kills -ge 6 ]; then sleep 0.5; continue; fi
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.8 + (r % 150) / 100 }')"
  mapfile -t pids < <(pgrep -f "$bin train .*--out $d" | grep -v "^$$\$")
  # ranks only: mpirun's own command line has "mpirun" in it
  ranks=()
  for p in "${pids[@]}"; do grep -qa mpirun "/proc/$p/cmdline" 2>/dev/null || ranks+=("$p"); done
  [ ${#ranks[@]} -gt 0 ] || continue
  victim=${ranks[$((RANDOM % ${#ranks[@]}))]}
  if kill -9 "$victim" 2>/dev/null; then
    kills=$((kills + 1))
    say "kill $kills: SIGKILL to rank pid $victim"
  fi
done
wait $sup
rc=$?
report_restarts

restarts=$(grep -c "^swiftmoe run: attempt .* failed" "$tmp/chaos.log")
killpoints=$(grep -c "kill point" "$tmp/chaos.log")
say "job exit $rc after $restarts restarts ($kills SIGKILLs from the test, $killpoints kill points hit)"
[ $rc -eq 0 ] || { echo "FAIL: the supervised job did not finish"; fail=1; }
[ "$restarts" -ge 3 ] || { echo "FAIL: only $restarts restarts: the loop did not exercise recovery"; fail=1; }

# every resume: from a checkpoint no older than the last one announced
# complete, and with the log from a step no older than the last one announced
# logged on every rank; the steps each resume lost
awk '
  /checkpoint of step [0-9]+ complete on every rank/ {
    for (i = 1; i <= NF; i++) if ($i == "step") last = $(i + 1) + 0 }
  /^resumed (from the checkpoint of step|at step)/ {
    s = -1; lost = 0; logged = -1
    for (i = 1; i <= NF; i++) {
      if ($i == "step" && s < 0) s = $(i + 1) + 0
      if ($(i + 1) ~ /^steps?$/ && $(i + 2) == "lost") lost = $i + 0
      if ($i == "rank" && $(i - 1) == "every") { logged = $(i + 1); sub(/\).*/, "", logged); logged += 0 } }
    n++; total += lost; if (lost > most) most = lost
    if (s < last) { printf "FAIL: resumed from %d, but %d was complete before the crash\n", s, last; bad = 1 }
    else if (s < logged) { printf "FAIL: resumed at %d, but %d was announced logged on every rank\n", s, logged; bad = 1 }
    else printf "resume %d: at step %d, %d step(s) lost (last announced complete: %d; logged: %d)\n", n, s, lost, last, logged
    if (s > last) last = s }
  END { if (n) printf "steps lost per resume: mean %.2f, most %d, over %d resumes\n", total / n, most, n
        exit bad }' "$tmp/chaos.log" || fail=1

timeout 60 python3 - "$tmp/ref" "$d" <<'PY' || fail=1
import json, sys
def losses(d):
    return {j["step"]: j["loss"] for j in map(json.loads, open(d + "/metrics.jsonl"))}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if a != b:
    diff = [s for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
    missing = [s for s in diff if s not in b]
    sys.exit("FAIL: per-step losses differ at steps %s%s" % (diff[:8], " (missing from the resumed "
             "run's metrics.jsonl: %s)" % missing[:8] if missing else ""))
print("per-step losses: %d steps, bitwise equal" % len(a))
PY
cmp -s "$tmp/ref/model.safetensors" "$d/model.safetensors" &&
  echo "final weights: bitwise equal" || { echo "FAIL: final weights differ"; fail=1; }
timeout 60 "$bin" ckpt verify "$d" >"$tmp/verify" || { echo "FAIL: ckpt verify"; cat "$tmp/verify"; fail=1; }
tail -1 "$tmp/verify"
[ $fail -eq 0 ] || diagnose "a check failed"
say "$([ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed")"
exit $fail
