#!/usr/bin/env bash
# The cost of checkpoint copies (checkpoint.redundancy = buddy) against none,
# measured in the same run, alternating: the same 4-rank job (async
# checkpoints every 10 steps) with and without copies, twice each. Per
# checkpoint: the bytes each rank stores, the bytes sent for the copies
# (metrics.jsonl's checkpoint_copy; the last checkpoint's copy is sent after
# the last metrics line, so the sum is over the others), the step loop's
# stall (summary.json checkpoint_stall_s), the steps from a checkpoint to its
# agreement (ckpt_global), and the training time and disk used.
# usage: tools/bench/redundancy_bench.sh [BUILD_DIR] [--set K=V ...] > results.md
set -euo pipefail
build=${1:-build}
shift || true
bin=$build/swiftmoe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
args=(--set training.steps=60 --set checkpoint.interval=10 --set training.eval_every=0
      --set metrics.progress=off --set training.threads=1 "$@")
echo "# Checkpoint copies, measured ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores, $bin)"
echo
echo "4 ranks, \`swiftmoe train ${args[*]}\`, with checkpoint.redundancy = none and buddy,"
echo "alternating, two rounds."
echo
echo "| round | redundancy | stored MB / rank / ckpt | copy MB sent / ckpt (all ranks) | stall s / ckpt | steps to agreement | train s | state/ MB |"
echo "|---|---|---|---|---|---|---|---|"
for round in 1 2; do
  for red in none buddy; do
    out=$work/$red$round
    mpirun --oversubscribe --bind-to none -np 4 "$bin" train "${args[@]}" \
      --set checkpoint.redundancy=$red --out "$out" >"$out.log" 2>&1 || { tail -5 "$out.log"; exit 1; }
    "$bin" ckpt ls "$out" >"$out.ls"
    disk=$(du -sb "$out/state" | cut -f1)
    python3 - "$out" "$round" "$red" "$disk" <<'PY'
import json, sys
out, rnd, red, disk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [json.loads(l) for l in open(out + "/metrics.jsonl")]
s = json.load(open(out + "/summary.json"))
ckpts = [r["step"] for r in rows if "checkpoint" in r]
agreed = {r["checkpoint_complete"]: r["step"] for r in rows if "checkpoint_complete" in r}
lat = [agreed[c] - c for c in ckpts if c in agreed]
stored = []
for line in open(out + ".ls"):
    f = line.split()
    if f and f[0].isdigit():
        stored.append(int(f[-3]))
sent = sum(r["bytes"].get("checkpoint_copy", 0) for r in rows)
n = len(ckpts)
print("| %s | %s | %.2f | %.2f | %.4f | %s | %.2f | %.1f |" % (
    rnd, red, sum(stored) / len(stored) / 4 / 1e6, sent / max(n - 1, 1) / 1e6,
    s["checkpoint_stall_s"] / max(n, 1),
    "%.1f" % (sum(lat) / len(lat)) if lat else "-", s["train_time_s"], disk / 1e6))
PY
  done
done
