#!/usr/bin/env bash
# Resharding, measured: `swiftmoe ckpt reshard` time and peak memory (the
# process's max RSS) for the demo model's checkpoint (runs/demo, 4 ranks) and
# for a synthetic state of about 1.1 GB per rank (tools/bench/ckpt_synth: 4
# ranks, dim 1024, expert_dim 3584, 4 layers, 8 experts), each to 2 and to 8
# ranks; then an online resume on 2 ranks of a 4-rank checkpoint against a
# resume on 4 ranks of the same checkpoint, in the same run (resume_s of
# summary.json: restoring until the first step can start).
# usage: tools/bench/reshard_bench.sh [BUILD_DIR] > results.md
set -euo pipefail
build=${1:-build}
bin=$build/swiftmoe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
echo "# Resharding ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores, $bin)"
echo
measure() { # SRC M: one reshard, its line and peak RSS
  local out=$work/out.$RANDOM
  /usr/bin/time -f "peak RSS %M KB" "$bin" ckpt reshard "$1" "$out" --world "$2" >"$work/line" 2>"$work/time"
  echo "- $(sed "s|$work/||g" "$work/line"); $(tail -1 "$work/time")"
  rm -rf "$out"
}
echo "## Offline"
echo
if [ -d runs/demo/state ]; then
  measure runs/demo 2
  measure runs/demo 8
fi
"$build/tools/bench/ckpt_synth" "$work/big" --G 4 >"$work/big.txt"
echo "- synthetic: $(head -1 "$work/big.txt") (each of 4 ranks)"
measure "$work/big" 2
measure "$work/big" 8
rm -rf "$work/big"
echo
echo "## Online (--resume auto): the demo model, 4 ranks, checkpoint at step 10, killed at 12"
echo
args=(--set training.steps=20 --set checkpoint.interval=10 --set training.eval_every=0
      --set metrics.progress=off --set training.threads=1)
SMOE_FAIL_AT=0:12 mpirun --oversubscribe --bind-to none -np 4 "$bin" train "${args[@]}" \
  --out "$work/run" >/dev/null 2>&1 || true
for round in 1 2; do # alternating, twice
  for G in 4 2; do
    rm -rf "$work/r$G" && cp -r "$work/run" "$work/r$G"
    mpirun --oversubscribe --bind-to none -np $G "$bin" train "${args[@]}" --out "$work/r$G" \
      --resume auto >"$work/r$G.log" 2>&1
    echo "- round $round, resume on $G ranks: resume_s $(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["resume_s"])' "$work/r$G/summary.json")$(grep -o 'resharded the checkpoint.*in [0-9.]* s' "$work/r$G.log" | sed 's/^/ (/; s/$/)/')"
  done
done
