#!/usr/bin/env bash
# Same-step shadows on real training loads: the 32-rank run of issue 17 (a
# small model early in training, while its router is still finding its
# experts: swiftmoe's imbalance is 4-13 on steps 5-35) trained once, then its
# placement log replayed (`swiftmoe ckpt replay`) with swiftmoe as it is and
# with one shadow slot per rank, under the GPU-scale cost model
# (shadow_rows 5333, engine/whatif.h) and under a conservative one for this
# machine (a shadow pays from 3 rows saved: the run computes ~11.5 GFLOP/s
# over its 32 ranks, ~0.36 per rank, so a row of this expert, 6 x 3 x 32 x 48
# flops, takes ~77 us, while a shadow's weights and gradient, 2 x 4 x 4608
# bytes, cross shared memory in ~10 us), and with shadows for free
# (shadow_rows 0: the best they can do).
# usage: tools/bench/shadow_replay.sh [BUILD_DIR] > results.md
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
echo "# Same-step shadows on a 32-rank run's loads ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores)"
echo
echo "\`mpirun --oversubscribe -np 32 $bin train ${args[*]}\`:"
echo
mpirun --oversubscribe --bind-to none -np 32 "$bin" train "${args[@]}" --out "$work/r32" \
  >"$work/r32.log" 2>&1 || { tail -5 "$work/r32.log"; exit 1; }
echo '```'
grep '^done:' "$work/r32.log"
echo '```'
echo
echo "\`$bin ckpt replay RUN --policy ...\`:"
echo
echo '```'
"$bin" ckpt replay "$work/r32" --policy static --policy swiftmoe --policy swiftmoe:shadow=1 \
  --policy swiftmoe:shadow=1,shadow_rows=3 --policy swiftmoe:shadow=1,shadow_rows=0 \
  --policy swiftmoe:shadow=2,shadow_rows=3 | sed "s|$work/||"
echo '```'
