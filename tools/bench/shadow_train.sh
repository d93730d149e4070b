#!/usr/bin/env bash
# Same-step shadows in training: the 32-rank run of issue 17 (a small model
# early in training, while its router is still finding its experts) trained
# without shadows and with one shadow slot per rank (placement.shadow_rows 3,
# this machine's cost: below), in the same run of
# this script: the mean imbalance over all 150 steps, over steps 5-35, the
# bytes per step by phase, and the training time. Then the first run's
# placement log replayed (`swiftmoe ckpt replay`) with swiftmoe as it is and
# with one shadow slot per rank under the GPU-scale cost model (shadow_rows
# 5333, engine/whatif.h), under this machine's (3 rows: the run computes
# ~11.5 GFLOP/s over its 32 ranks, ~0.36 per rank, so a row of this expert,
# 6 x 3 x 32 x 48 flops, takes ~77 us, while a shadow's weights and gradient,
# 2 x 4 x 4608 bytes, cross shared memory in ~10 us), and for free
# (shadow_rows 0: the best they can do).
# usage: tools/bench/shadow_train.sh [BUILD_DIR] > results.md
set -euo pipefail
build=${1:-build}
bin=$build/swiftmoe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
args=(--set model.dim=32 --set model.n_layers=2 --set moe.num_experts=64 --set moe.expert_dim=48
      --set model.seq_len=64 --set training.global_batch_size=256 --set training.steps=150
      --set training.warmup_steps=10 --set checkpoint.interval=0 --set metrics.progress=off
      --set training.threads=1)
echo "# Same-step shadows in training, 32 ranks ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores)"
echo
echo "\`mpirun --oversubscribe -np 32 $bin train ${args[*]}\`, then the same with"
echo "\`--set placement.shadow_slots=1 --set placement.shadow_rows=3\`."
echo
echo "| run | mean imbalance | steps 5-35 | p95 | worst | final train loss | train s | MB/step by phase |"
echo "|---|---|---|---|---|---|---|---|"
for run in plain shadows; do
  extra=()
  [ $run = shadows ] && extra=(--set placement.shadow_slots=1 --set placement.shadow_rows=3)
  mpirun --oversubscribe --bind-to none -np 32 "$bin" train "${args[@]}" "${extra[@]}" \
    --out "$work/$run" >"$work/$run.log" 2>&1 || { tail -5 "$work/$run.log"; exit 1; }
  python3 - "$work/$run" "$run" <<'PY'
import json, sys
d, name = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
s = json.load(open(d + "/summary.json"))
imb = sorted(r["imbalance"] for r in rows)
early = [r["imbalance"] for r in rows if 5 <= r["step"] <= 35]
phases = {}
for r in rows:
    for k, v in r["bytes"].items():
        phases[k] = phases.get(k, 0) + v / len(rows) / 1e6
by = ", ".join("%s %.2f" % (k, v) for k, v in phases.items() if v > 0)
print("| %s | %.3f | %.3f | %.3f | %.3f | %.4f | %.1f | %s |" % (
    name, s["mean_imbalance"], sum(early) / len(early), imb[int(0.95 * len(imb)) - 1], imb[-1],
    s["final_train_loss"], s["train_time_s"], by))
PY
done
echo
echo "The first run's log replayed: \`$bin ckpt replay RUN --policy ...\`"
echo
echo '```'
"$bin" ckpt replay "$work/plain" --policy static --policy swiftmoe --policy swiftmoe:shadow=1 \
  --policy swiftmoe:shadow=1,shadow_rows=3 --policy swiftmoe:shadow=1,shadow_rows=0 \
  --policy swiftmoe:shadow=2,shadow_rows=3 | sed "s|$work/||"
echo '```'
