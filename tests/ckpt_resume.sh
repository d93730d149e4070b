#!/usr/bin/env bash
# Checkpoints and recovery, end to end (float build, small model):
#  - same-G resume is bitwise: N steps uninterrupted == a run that fails at
#    step k, then `--resume auto`: identical per-step losses and final weights,
#    with full-only and with full + delta checkpoints, on 1 and 4 ranks;
#  - SIGTERM during training and during a checkpoint write: exit 0, "preempted
#    at step N", and the resumed run loses no step and ends bitwise equal;
#  - corruption: a flipped byte in, or a truncation of, the newest blob file, and
#    a deleted manifest, are each found by `swiftmoe ckpt verify` and `--resume
#    auto` falls back to the previous globally complete checkpoint (still ending
#    bitwise equal: the lost steps are recomputed);
#  - `--resume STEP` of a damaged checkpoint fails naming rank, step and key;
#    a config with other shapes fails listing the mismatches.
# usage: ckpt_resume.sh path/to/swiftmoe path/to/store_tool
set -uo pipefail
bin=$1
tool=$2
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none -np 4)
args=(--set model.dim=64 --set moe.expert_dim=96 --set model.seq_len=64 --set training.steps=24
      --set training.warmup_steps=4 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=4)
pass=0
fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# same: the two runs' per-step losses and final weights are bitwise equal
same() {
  python3 - "$1" "$2" <<'PY'
import json, sys
def losses(d):
    return {j["step"]: j["loss"] for j in map(json.loads, open(d + "/metrics.jsonl"))}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if a != b:
    diff = [s for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
    sys.exit("losses differ at steps %s" % diff[:5])
PY
  [ $? -eq 0 ] && cmp -s "$1/model.safetensors" "$2/model.safetensors"
}

"$bin" train "${args[@]}" --out "$tmp/ref1" 2>"$tmp/ref1.log" || bad "reference run"
"${mpi[@]}" "$bin" train "${args[@]}" --out "$tmp/ref4" 2>"$tmp/ref4.log" || bad "reference run, 4 ranks"

# --- fail at step k, resume -----------------------------------------------------
for full in 1 3; do
  d=$tmp/fail1_$full
  SMOE_FAIL_AT=0:10 "$bin" train "${args[@]}" --set checkpoint.full_every=$full --out "$d" \
    2>/dev/null && bad "injected failure did not fail"
  "$bin" train "${args[@]}" --set checkpoint.full_every=$full --out "$d" --resume auto \
    2>"$d.log" || bad "resume (1 rank, full_every $full)"
  if grep -q "resumed from the checkpoint of step 8 .* 2 steps lost" "$d.log" && same "$tmp/ref1" "$d"; then
    ok "1 rank, full_every $full: failed at 10, resumed from 8, bitwise equal"
  else
    bad "1 rank, full_every $full: not bitwise equal or wrong resume point"; tail -3 "$d.log"
  fi
done
d=$tmp/fail4
SMOE_FAIL_AT=2:14 "${mpi[@]}" "$bin" train "${args[@]}" --out "$d" >/dev/null 2>&1 &&
  bad "injected failure did not fail (4 ranks)"
gone "$d"
"${mpi[@]}" "$bin" train "${args[@]}" --out "$d" --resume auto 2>"$d.log" || bad "resume, 4 ranks"
if grep -q "resumed from the checkpoint of step 12" "$d.log" && same "$tmp/ref4" "$d"; then
  ok "4 ranks, full + deltas: failed at 14 on rank 2, resumed from 12, bitwise equal"
else
  bad "4 ranks: not bitwise equal or wrong resume point"; tail -3 "$d.log"
fi
"$bin" ckpt verify "$d" >"$d.verify" || { bad "ckpt verify of a healthy run"; cat "$d.verify"; }

# --- SIGTERM --------------------------------------------------------------------
# wait_step DIR N: until DIR/metrics.jsonl has a line of step >= N
wait_step() {
  for _ in $(seq 600); do
    [ -f "$1/metrics.jsonl" ] && [ "$(tail -1 "$1/metrics.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/')" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
sigterm_case() { # name, extra args...
  local name=$1 d=$tmp/$1
  shift
  "$bin" train "${args[@]}" "$@" --set training.steps=24 --out "$d" 2>"$d.log" &
  local pid=$!
  wait_step "$d" 6 && kill -TERM $pid
  wait $pid
  local rc=$?
  if [ $rc -eq 0 ] && grep -q "preempted at step" "$d.log"; then
    local at
    at=$(sed -n 's/.*preempted at step \([0-9]*\).*/\1/p' "$d.log")
    "$bin" train "${args[@]}" "$@" --out "$d" --resume auto 2>"$d.resume.log"
    if grep -q "resumed from the checkpoint of step $at .* 0 steps lost" "$d.resume.log" &&
       same "$tmp/ref1" "$d"; then
      ok "SIGTERM $name: exit 0 at step $at, resumed with no step lost, bitwise equal"
    else
      bad "SIGTERM $name: resume lost steps or differs"; tail -3 "$d.resume.log"
    fi
  else
    bad "SIGTERM $name: exit $rc, want 0 with 'preempted at step'"; tail -3 "$d.log"
  fi
}
sigterm_case training
# a checkpoint every step, asynchronous: the signal lands during a write
sigterm_case during_write --set checkpoint.interval=1

# --- the timer and a busy writer -------------------------------------------------
d=$tmp/timer
"$bin" train "${args[@]}" --set checkpoint.interval=0 --set checkpoint.every_seconds=0.3 \
  --set training.steps=60 --out "$d" 2>/dev/null || bad "checkpoint.every_seconds run"
n=$(grep -c '"write":"async"' "$d/metrics.jsonl")
[ "$n" -ge 1 ] && ok "checkpoint.every_seconds = 0.3, interval 0: $n checkpoints by the timer" ||
  bad "checkpoint.every_seconds: no checkpoint"
d=$tmp/skip
"$bin" train "${args[@]}" --set checkpoint.interval=1 --set checkpoint.when_busy=skip --set checkpoint.zstd_level=19 \
  --out "$d" 2>/dev/null || bad "when_busy = skip run"
n=$(grep -c '"write":"skipped"' "$d/metrics.jsonl")
[ "$n" -ge 1 ] && ok "when_busy = skip at interval 1 (slow zstd-19 writes): $n checkpoints skipped, said in metrics.jsonl" ||
  bad "when_busy = skip: nothing skipped"

# --- corruption -------------------------------------------------------------------
# a run stopped after step 18: checkpoints 12 and 16 kept (keep = 2), all full;
# writes synchronous (16 surely agreed before the failure), or MODE=async (the
# default: 12 is agreed before 16 is staged, so it is there to fall back to)
mkrun() {
  SMOE_FAIL_AT=0:18 "$bin" train "${args[@]}" --set checkpoint.full_every=1 \
    --set checkpoint.mode="${MODE:-sync}" --out "$1" 2>/dev/null
  local steps
  steps=$("$bin" ckpt ls "$1" | awk '$1 ~ /^[0-9]+$/ { printf " %s ", $1 }')
  [[ $steps == *" 12 "*" 16 "* ]] || bad "setup: checkpoints 12 and 16 expected in $1: $steps"
}
fallback() { # name dir: verify must fail, resume auto must fall back to 12 and end bitwise equal
  local name=$1 d=$2
  if "$bin" ckpt verify "$d" >"$d.verify" 2>&1; then
    bad "$name: ckpt verify did not notice"; cat "$d.verify"
  fi
  "$bin" train "${args[@]}" --set checkpoint.full_every=1 --out "$d" --resume auto 2>"$d.log"
  if grep -q "falling back" "$d.log" && grep -q "resumed from the checkpoint of step 12" "$d.log" &&
     same "$tmp/ref1" "$d"; then
    ok "$name: detected ($(grep -m1 FAULT "$d.verify" | cut -c1-110)...), fell back to 12, bitwise equal"
  else
    bad "$name: no fallback to 12"; tail -4 "$d.log"
  fi
}
d=$tmp/flip; mkrun "$d"
blob=$(ls "$d"/state/rank-0/*.blob | sort | tail -1)
size=$(stat -c %s "$blob")
printf '\xa5\x5a\xa5\x5a' | dd of="$blob" bs=1 seek=$((size / 2)) conv=notrunc status=none
fallback "flipped bytes in the newest blob file" "$d"

d=$tmp/flip_async; MODE=async mkrun "$d"
blob=$(ls "$d"/state/rank-0/*.blob | sort | tail -1)
printf '\xa5\x5a\xa5\x5a' | dd of="$blob" bs=1 seek=$(($(stat -c %s "$blob") / 2)) conv=notrunc status=none
fallback "asynchronous writes, flipped bytes in the newest blob file" "$d"

d=$tmp/trunc; mkrun "$d"
blob=$(ls "$d"/state/rank-0/*.blob | sort | tail -1)
truncate -s $(($(stat -c %s "$blob") / 3)) "$blob"
fallback "truncated newest blob file" "$d"

d=$tmp/noman; mkrun "$d"
"$tool" "$d/state" 0 delete-manifest 16 || bad "store_tool"
fallback "deleted manifest" "$d"

# a damaged placement record of the newest checkpoint's step: an expert out of
# range (with a valid checksum), a byte cut off, a flipped byte
for how in expert length flip; do
  d=$tmp/plan_$how; mkrun "$d"
  "$tool" "$d/state" 0 plan 16 "$how" || bad "store_tool plan $how"
  fallback "placement record of step 16, damage '$how'" "$d"
  grep -q "placement record of step 16: " "$d.log" ||
    bad "plan $how: the resume does not say what is wrong with the record"
done
d=$tmp/plan_exact; mkrun "$d"
"$tool" "$d/state" 0 plan 16 expert
"$bin" train "${args[@]}" --out "$d" --resume 16 2>"$d.log" && bad "--resume 16 with a bad placement record succeeded"
if grep -q "placement record of step 16: not a valid placement: layer 0: slot 0 of rank 0 holds expert 11" "$d.log"; then
  ok "--resume 16, bad placement record: $(grep -m1 "swiftmoe train:" "$d.log" | sed 's/.*placement record/placement record/' | cut -c1-120)"
else
  bad "--resume 16: the placement record's fault is not named"; tail -3 "$d.log"
fi
# 4 ranks: a record that is valid but differs from the other ranks' (two slots
# swapped on rank 1, checksum rewritten) is caught by the cross-check
d=$tmp/plan_differs
SMOE_FAIL_AT=0:18 "${mpi[@]}" "$bin" train "${args[@]}" --set checkpoint.mode=sync --out "$d" >/dev/null 2>&1
gone "$d"
"$tool" "$d/state" 1 plan 16 swap || bad "store_tool plan swap"
"${mpi[@]}" "$bin" train "${args[@]}" --out "$d" --resume auto 2>"$d.log" >/dev/null
if grep -q "the ranks' placement records of step 16 differ" "$d.log" &&
   grep -q "resumed from the checkpoint of step 12" "$d.log" && same "$tmp/ref4" "$d"; then
  ok "4 ranks, rank 1's placement record of step 16 differs: found by the cross-check, fell back to 12, bitwise equal"
else
  bad "4 ranks, differing placement records: not caught"; grep -v "^\[" "$d.log" | tail -4
fi

# --resume STEP of a damaged checkpoint: an error naming rank, step and key
d=$tmp/exact; mkrun "$d"
blob=$(ls "$d"/state/rank-0/*.blob | sort | tail -1)
printf '\xff\xff\xff\xff' | dd of="$blob" bs=1 seek=$(($(stat -c %s "$blob") / 2)) conv=notrunc status=none
"$bin" train "${args[@]}" --out "$d" --resume 16 2>"$d.log" && bad "--resume 16 of a damaged checkpoint succeeded"
if grep -Eq "rank 0, checkpoint of step 16: (shard|dense) key \(step 16, region .*, chunk 0\)" "$d.log"; then
  ok "--resume 16, damaged: $(grep -m1 "rank 0, checkpoint" "$d.log" | cut -c1-150)"
else
  bad "--resume 16: message does not name rank, step and key"; tail -3 "$d.log"
fi

# other shapes: every mismatch listed, nothing resumed
d=$tmp/shapes; mkrun "$d"
"$bin" train "${args[@]}" --set model.dim=32 --set moe.num_experts=4 --out "$d" --resume auto \
  2>"$d.log" && bad "resume with other shapes succeeded"
if grep -q "model.dim = 32 (checkpoint: 64); moe.num_experts = 4 (checkpoint: 8)" "$d.log"; then
  ok "other shapes: $(grep -m1 "other shapes" "$d.log" | sed 's/.*swiftmoe train: //' | cut -c1-150)"
else
  bad "other shapes: mismatches not listed"; tail -3 "$d.log"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
