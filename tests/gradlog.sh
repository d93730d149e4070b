#!/usr/bin/env bash
# The gradient log (checkpoint.log_gradients = on), end to end:
#  - the double build and the float build, 1 and 4 ranks: a run SIGKILLed at a
#    random step (one rank killed, mpirun ends the rest) and resumed with
#    --resume auto loses at most the steps whose log had not reached disk
#    (each count printed), resumes no earlier than the last step metrics.jsonl
#    announced logged on every rank, and ends bitwise equal to an
#    uninterrupted run (every step's loss and the final weights);
#  - `ckpt verify`: the log replayed from each checkpoint gives the next one's
#    bytes exactly, on every rank; `ckpt ls` lists each rank's log;
#  - a corrupted log chunk (rank 2 of 4): the resume stops the replay at the
#    step before it, says so, and the run goes on to end bitwise equal;
#    --resume to a step past it fails naming the chunk;
#  - a writer slower than a step (test hook SMOE_LOG_DELAY_MS, 200 ms a record
#    against steps of tens of ms): the run ends, the log never lags more than
#    checkpoint.log_buffers steps, and a kill then loses at most those (and
#    ends bitwise equal);
#  - pruning: after the run, the log holds only steps after the oldest kept
#    checkpoint, and --resume to a step before them is refused.
# Every run is bounded (timeout); a failed check keeps the logs.
# usage: gradlog.sh path/to/swiftmoe_f64 path/to/swiftmoe path/to/store_tool
set -uo pipefail
f64=$1
f32=$2
tool=$3
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
keep_logs
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=8 --set training.steps=60 --set training.warmup_steps=4
      --set training.eval_every=0 --set training.eval_windows=4 --set metrics.progress=off
      --set training.threads=1 --set checkpoint.interval=10 --set checkpoint.log_gradients=on)

# run N BIN ARGS...: a 1-rank run, or an N-rank MPI job, killed after 300 s
run() { local n=$1; shift; if [ "$n" = 1 ]; then timeout 300 "$@"; else mpi "$n" "$@"; fi; }

# bitwise REF DIR: every step's loss and the final weights equal
bitwise() {
  python3 - "$1" "$2" <<'PY' && cmp -s "$1/model.safetensors" "$2/model.safetensors"
import json, sys
def losses(d):
    return {j["step"]: j["loss"] for j in map(json.loads, open(d + "/metrics.jsonl"))}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if a != b:
    sys.exit("losses differ at steps %s" % [s for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)][:5])
PY
}

# last_logged DIR: the newest step metrics.jsonl announced logged on every rank
last_logged() {
  python3 - "$1" <<'PY'
import json, sys
v = [j["gradient_log"]["logged"] for j in map(json.loads, open(sys.argv[1] + "/metrics.jsonl"))
     if "gradient_log" in j]
print(int(max(v)) if v else -1)
PY
}

# kill_at N BIN DIR STEP: starts the run, SIGKILLs one of its processes once
# metrics.jsonl reaches STEP; fails when the run ended before that
kill_at() {
  local n=$1 bin=$2 d=$3 at=$4
  run "$n" "$bin" train "${args[@]}" --out "$d" >"$d.out" 2>"$d.log" &
  local job=$!
  for _ in $(seq 1200); do
    [ -f "$d/metrics.jsonl" ] && [ "$(wc -l <"$d/metrics.jsonl")" -ge "$at" ] && break
    kill -0 $job 2>/dev/null || break
    sleep 0.05
  done
  local pids victim
  mapfile -t pids < <(pgrep -f "$bin train .*--out $d( |$)")
  victim=""
  for p in "${pids[@]}"; do grep -qa mpirun "/proc/$p/cmdline" 2>/dev/null || victim=$p; done
  [ -n "$victim" ] && kill -9 "$victim"
  wait $job
  local rc=$?
  gone "$d"
  [ $rc -ne 0 ] && [ -n "$victim" ]
}

for build in f64 f32; do
  bin=${!build}
  for n in 1 4; do
    ref=$tmp/ref_${build}_$n
    run "$n" "$bin" train "${args[@]}" --out "$ref" >/dev/null 2>"$ref.log" || bad "$build, $n ranks: reference run"
    d=$tmp/kill_${build}_$n
    at=$((5 + RANDOM % 40))
    kill_at "$n" "$bin" "$d" "$at" || { bad "$build, $n ranks: the run ended before the kill at step $at"; continue; }
    before=$(last_logged "$d")
    last=$(tail -1 "$d/metrics.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/')
    run "$n" "$bin" train "${args[@]}" --out "$d" --resume auto >/dev/null 2>"$d.resume" ||
      { bad "$build, $n ranks: resume after SIGKILL at step $last"; tail -3 "$d.resume"; continue; }
    line=$(grep -m1 "^resumed" "$d.resume")
    from=$(sed -n 's/^resumed at step \([0-9]*\).*/\1/p; s/^resumed from the checkpoint of step \([0-9]*\).*/\1/p' <<<"$line")
    if [ -z "$from" ] || [ "$from" -lt "$before" ]; then
      bad "$build, $n ranks: resumed at '${from}' but step $before was announced logged ($line)"
    elif bitwise "$ref" "$d"; then
      ok "$build, $n ranks: SIGKILL after step $last, resumed at $from ($((last - from)) step(s) lost; $before announced logged), bitwise equal"
    else
      bad "$build, $n ranks: not bitwise equal after the resume at $from"
    fi
  done
done

# --- ckpt verify / ls: the replay between checkpoints, every rank --------------
d=$tmp/ref_f64_4
if "$f64" ckpt verify "$d" >"$tmp/verify" && [ "$(grep -c "replays the checkpoint of step 50 to that of step 60 bit for bit" "$tmp/verify")" = 4 ]; then
  ok "ckpt verify: the log replays checkpoint 50 to checkpoint 60 bit for bit on all 4 ranks ($(tail -1 "$tmp/verify"))"
else
  bad "ckpt verify of the log"; cat "$tmp/verify"
fi
"$f64" ckpt ls "$d" >"$tmp/ls"
if grep -q "^gradient log" "$tmp/ls" && [ "$(grep -cE "^ +[0-3] +51 +60 +10 " "$tmp/ls")" = 4 ]; then
  ok "ckpt ls: every rank's log holds steps 51..60 (pruned before the oldest kept checkpoint, 50)"
else
  bad "ckpt ls of the log"; cat "$tmp/ls"
fi

# --resume before every kept checkpoint: the log replays only from one
fails "no checkpoint at or before step 5" "$f64" train "${args[@]}" --out "$tmp/ref_f64_1" --resume 5

# --- a damaged record ---------------------------------------------------------
d=$tmp/corrupt
SMOE_FAIL_AT=2:17 mpi 4 "$f64" train "${args[@]}" --out "$d" >/dev/null 2>&1 && bad "injected failure did not fail"
gone "$d"
"$tool" "$d/state" 2 flip-log 14 0 || bad "store_tool flip-log"
if "$f64" ckpt verify "$d" >"$tmp/verify"; then bad "ckpt verify missed the damaged log chunk"; else
  grep -q "FAULT .*rank-2: gradient log of step 14, part 0 chunk 0" "$tmp/verify" &&
    ok "ckpt verify names the damaged chunk: $(grep -m1 FAULT "$tmp/verify" | cut -c1-150)" ||
    { bad "ckpt verify's fault"; cat "$tmp/verify"; }
fi
mpi 4 "$f64" train "${args[@]}" --out "$d" --resume 16 >/dev/null 2>"$tmp/err" &&
  bad "--resume 16 past a damaged record succeeded"
gone "$d"
grep -q "replays only to step 13" "$tmp/err" && ok "--resume 16 fails: $(grep -m1 "replays only" "$tmp/err" | cut -c1-160)" ||
  { bad "--resume 16's message"; cat "$tmp/err"; }
mpi 4 "$f64" train "${args[@]}" --out "$d" --resume auto >/dev/null 2>"$d.log" || bad "resume past the damaged record"
if grep -q "cannot be replayed past step 13" "$d.log" && grep -q "^resumed at step 13 .* checkpoint of step 10 and 3 gradient-log records" "$d.log" &&
   bitwise "$tmp/ref_f64_4" "$d"; then
  ok "a damaged record of step 14 on rank 2: replayed to 13, said so, and ended bitwise equal"
else
  bad "the resume past a damaged record"; grep -v "^step" "$d.log" | head -8
fi

# --- a writer slower than a step -------------------------------------------
d=$tmp/slow
SMOE_LOG_DELAY_MS=200 mpi 4 "$f64" train "${args[@]}" --set checkpoint.log_buffers=2 --out "$d" >/dev/null 2>"$d.log" ||
  bad "the run with a slow log writer"
lag=$(python3 - "$d" <<'PY'
import json, sys
lines = [j for j in map(json.loads, open(sys.argv[1] + "/metrics.jsonl")) if "gradient_log" in j]
print(max(j["step"] - j["gradient_log"]["logged"] for j in lines),
      "%.3f" % max(j["gradient_log"]["stall_s"] for j in lines))
PY
)
set -- $lag
if [ "${1:-9}" -le 2 ] && [ "${1:-0}" -ge 2 ]; then
  ok "a writer 200 ms per record: the log lagged at most $1 steps (log_buffers = 2), the longest stall $2 s"
else
  bad "the slow writer's lag: $lag (want exactly the 2 buffers at most)"
fi

# ... and killed while the log lags: it loses at most the lagging steps
d=$tmp/slow_kill
if SMOE_LOG_DELAY_MS=200 kill_at 4 "$f64" "$d" 20; then
  last=$(tail -1 "$d/metrics.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/')
  mpi 4 "$f64" train "${args[@]}" --out "$d" --resume auto >/dev/null 2>"$d.resume" || bad "resume after a kill with a slow writer"
  from=$(sed -n 's/^resumed at step \([0-9]*\).*/\1/p' "$d.resume")
  if [ -n "$from" ] && [ $((last - from)) -le 2 ] && bitwise "$tmp/ref_f64_4" "$d"; then
    ok "a slow writer killed after step $last: resumed at $from ($((last - from)) lost, log_buffers = 2), bitwise equal"
  else
    bad "a slow writer killed after step $last: resumed at '${from}'"; head -3 "$d.resume"
  fi
else
  bad "the slow-writer run ended before the kill"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
