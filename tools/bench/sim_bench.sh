#!/usr/bin/env bash
# The cluster cost model's figures (issue: "what swiftmoe buys on clusters we
# cannot run here"), as markdown on stdout:
#  - the simulator's own speed: `swiftmoe sim` of 1,000 steps x 12 layers at
#    G = 1024 for every policy on one core (taskset), wall time, against the
#    same command at G = 64 measured in the same run;
#  - paper-a100x16: each policy's mean step and its parts on the swiftmoe
#    run's own loads (the compare's trace) and on synthetic skew, with the
#    steps that moved replicas against the others (FlexMoE's re-plan cost);
#    FasterMoE's model beside ours;
#  - `swiftmoe compare --preset quick`: its table (trained here, or kept from
#    COMPARE_DIR with --reuse).
# usage: tools/bench/sim_bench.sh [BUILD_DIR] [COMPARE_DIR] > results.md
set -euo pipefail
build=${1:-build}
cmp=${2:-$(mktemp -d)/compare}
bin=$build/swiftmoe
one() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
echo "# swiftmoe sim and compare, measured ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores, $bin)"
echo
echo "## The simulator's speed (one core)"
echo
for G in 64 1024; do
  cmd=(sim --scenario h200x256 --ranks $G --layers 12 --steps 1000)
  t0=$(date +%s.%N)
  one "$bin" "${cmd[@]}" >"/tmp/sim_bench_$G.txt"
  t1=$(date +%s.%N)
  printf -- '- `swiftmoe %s`: **%.1f s** wall for all 9 policies\n' "${cmd[*]}" "$(echo "$t1 - $t0" | bc)"
done
echo
echo '```'
cat /tmp/sim_bench_1024.txt
echo '```'
echo
echo "## The quick comparison (\`swiftmoe compare --preset quick --out $cmp\`)"
echo
reuse=()
[ -d "$cmp/runs" ] && reuse=(--reuse)
t0=$(date +%s)
"$bin" compare --preset quick --out "$cmp" "${reuse[@]}" --scenario paper-a100x16 \
  --scenario h200x8 >/tmp/sim_bench_compare.txt
echo "Wall time: $(($(date +%s) - t0)) s$([ ${#reuse[@]} = 1 ] && echo ' (runs kept from an earlier call)')."
echo
cat "$cmp/table.md"
echo
for trace in "$cmp/runs/swiftmoe" synthetic; do
  if [ "$trace" = synthetic ]; then
    cmd=(sim --scenario paper-a100x16 --synthetic zipf:1.0,drift:0.05 --steps 1000)
  else
    cmd=(sim --scenario paper-a100x16 --trace "$trace")
  fi
  echo "## paper-a100x16: \`swiftmoe ${cmd[*]}\`"
  echo
  echo '```'
  "$bin" "${cmd[@]}"
  echo '```'
  echo
done
echo "## Fewer slots for swiftmoe on paper-a100x16 (the same trace)"
echo
echo '```'
"$bin" sim --scenario paper-a100x16 --trace "$cmp/runs/swiftmoe" --policy capacity:1.0 \
  --policy swiftmoe:S=4 --policy swiftmoe:S=2 --policy swiftmoe:S=1
echo '```'
