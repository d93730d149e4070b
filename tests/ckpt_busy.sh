#!/usr/bin/env bash
# Checkpoints written while the previous write is still running (the default
# checkpoint.when_busy = wait), with every write made slower than a step by the
# test build's hook (SMOE_WRITE_DELAY_MS), a checkpoint every step for 200 steps:
#  - every checkpoint written is announced complete on every rank (steps 1..200),
#    `ckpt ls` lists exactly keep = 2 at the end, and the state folder's disk use
#    stays bounded: its peak (sampled) is within (keep + 2) checkpoints + 4 MB;
#  - a write that fails while the next checkpoint waits for it is reported at
#    once, naming its step: the run ends at the next checkpoint with exit 1.
# usage: ckpt_busy.sh path/to/swiftmoe_f64 (the test build with the hooks)
set -uo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'pkill -9 -f "$tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=8 --set training.eval_every=0 --set training.eval_windows=4
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=1
      --set checkpoint.keep=2)
fail=0

d=$tmp/busy
SMOE_WRITE_DELAY_MS=60 timeout -k 5 240 "$bin" train "${args[@]}" --set training.steps=200 \
  --out "$d" 2>"$tmp/busy.log" &
job=$!
peak=0
while kill -0 $job 2>/dev/null; do
  b=$(du -sb "$d/state" 2>/dev/null | cut -f1)
  [ -n "$b" ] && [ "$b" -gt "$peak" ] && peak=$b
  sleep 0.2
done
wait $job || { echo "FAIL: the run failed"; tail -3 "$tmp/busy.log"; exit 1; }
written=$(grep -c '"write":"async"' "$d/metrics.jsonl")
announced=$(grep -o "checkpoint of step [0-9]* complete on every rank" "$tmp/busy.log" |
  awk '{print $4}' | sort -n | uniq | tr '\n' ' ')
want=$(seq 1 200 | tr '\n' ' ')
waits=$(python3 -c "
import json
rows = [json.loads(l) for l in open('$d/metrics.jsonl')]
print(sum(1 for r in rows if r.get('checkpoint', {}).get('stall_s', 0) > 0.03))")
one=$("$bin" ckpt ls "$d" | awk '$1 ~ /^[0-9]+$/ { b = $6 } END { print b }')
kept=$("$bin" ckpt ls "$d" | awk '$1 ~ /^[0-9]+$/ { printf "%s ", $1 }')
bound=$(( (2 + 2) * one + 4000000 ))
echo "200 steps, a checkpoint every step, each write 60 ms slower than the step: $written written," \
  "$(wc -w <<<"$announced") announced complete, $waits steps waited > 30 ms for the previous write;" \
  "kept: $kept; state folder peak $peak bytes ($(awk -v p=$peak -v o=$one 'BEGIN { printf "%.2f", p / o }')" \
  "checkpoints of $one bytes; bound $bound)"
[ "$written" -eq 200 ] || { echo "FAIL: $written checkpoints written, 200 expected"; fail=1; }
[ "$announced" = "$want" ] || { echo "FAIL: not every checkpoint was announced complete: $announced"; fail=1; }
[ "$waits" -ge 100 ] || { echo "FAIL: only $waits steps waited for a busy writer: the hook did not slow the writes"; fail=1; }
[ "$kept" = "199 200 " ] || { echo "FAIL: ckpt ls lists '$kept', expected keep = 2 (199 200)"; fail=1; }
[ "$peak" -le "$bound" ] || { echo "FAIL: disk use peaked at $peak bytes, above $bound"; fail=1; }

# a write that fails while the next checkpoint waits for it
d=$tmp/fails
rc=0
SMOE_WRITE_DELAY_MS=60 SMOE_FAIL_WRITE_AT=5 timeout -k 5 120 "$bin" train "${args[@]}" \
  --set training.steps=50 --out "$d" 2>"$tmp/fails.log" || rc=$?
last=$(tail -1 "$d/metrics.jsonl" | sed 's/^{"step":\([0-9]*\).*/\1/')
if [ $rc -eq 1 ] && grep -q "rank 0, checkpoint of step 5: injected write failure" "$tmp/fails.log" &&
   [ "$last" -le 6 ]; then
  echo "a failed write, found while the next checkpoint waited: exit 1 after step $last:" \
    "$(grep -m1 "injected" "$tmp/fails.log" | cut -c1-100)"
else
  echo "FAIL: failed write: exit $rc, last step $last"; tail -3 "$tmp/fails.log"; fail=1
fi
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
