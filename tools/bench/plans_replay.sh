#!/usr/bin/env bash
# The placement log read back, measured: for a run folder (the demo's by
# default) the summary, the heatmap, the determinism audit's time and the
# what-if table; then the same on a synthetic log at G = 64, E = 256, L = 8,
# 1000 steps, with hot experts that jump every 3 steps (16x their base load),
# and on uniform loads (where rebalancing buys nothing). Every policy's
# imbalance is next to static's and swiftmoe's from the same run of the tool.
# usage: tools/bench/plans_replay.sh [RUN_DIR] [BUILD_DIR] > results.md
set -euo pipefail
run=${1:-runs/demo}
build=${2:-build}
bin=$build/swiftmoe
synth=$build/tools/bench/plans_synth
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
policies=(--policy static --policy capacity:1.0 --policy capacity:1.25 --policy symi
          --policy eplb:100 --policy flexmoe:10 --policy flexmoe:50 --policy flexmoe:100
          --policy swiftmoe --policy swiftmoe:shadow=1)
block() { echo '```'; "$@"; echo '```'; }

echo "# The placement log read back ($(date -u +%F), $(nproc) cores)"
echo
echo "## $run"
echo
echo "\`$bin ckpt plans $run\`"
block "$bin" ckpt plans "$run"
echo
echo "\`$bin ckpt replay $run\` (the audit: every logged plan re-planned by the run's policy)"
block "$bin" ckpt replay "$run"
echo
echo "\`$bin ckpt replay $run ${policies[*]}\`"
block "$bin" ckpt replay "$run" "${policies[@]}"
for kind in drifting uniform; do
  flags=(--G 64 --E 256 --L 8 --K 8 --steps 1000 --tokens 4096)
  [ $kind = uniform ] && flags+=(--uniform)
  echo
  echo "## Synthetic, $kind loads: \`$synth DIR ${flags[*]}\`"
  echo
  block "$synth" "$work/$kind" "${flags[@]}" 2>/dev/null
  echo
  echo "\`$bin ckpt replay DIR\` (the audit)"
  block "$bin" ckpt replay "$work/$kind"
  echo
  echo "\`$bin ckpt replay DIR ${policies[*]}\`"
  block "$bin" ckpt replay "$work/$kind" "${policies[@]}"
  rm -rf "${work:?}/$kind"
done
echo
echo "Record sizes at L 60, E 256, G 1024 (rank 0's records as training writes them):"
block "$synth" - --G 1024 --E 256 --L 60 --K 8 --steps 20 --tokens 4096
