#!/usr/bin/env bash
# The planner and the load-aware split (engine/plan.c, engine/split.c), one
# layer on one core: the time of counts + slots + split at several (G, E, S),
# and the balance of the policies static / symi / eplb / swiftmoe on
# synthetic traces (and on a run's metrics.jsonl with --trace). Builds
# tools/bench/plan_bench.c by hand (gcc -O2), prints the tables and writes
# tools/bench/results/<date>-plan.md.
# With --hedge: swiftmoe as it is, with hedged loads, with same-step shadows
# and with both (engine/shadow.h) on the synthetic traces, with and without
# the jumps, into tools/bench/results/<date>-hedge.md.
# usage: tools/bench/plan_bench.sh [--quick] [--hedge] [--trace metrics.jsonl [--ranks G]] [--json PATH]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/plan_bench
gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$root/engine" \
  "$root/engine/common.c" "$root/engine/arena.c" "$root/engine/plan.c" "$root/engine/split.c" \
  "$root/engine/shadow.c" \
  "$root/tools/bench/plan_bench.c" -lm -o "$bin"
"$bin" "$@" >"$tmp/out.md"
out="$root/tools/bench/results/$(date -u +%Y-%m-%d)-plan.md"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //' || echo unknown)
if [[ " $* " == *" --hedge "* ]]; then
  out="$root/tools/bench/results/$(date -u +%Y-%m-%d)-hedge.md"
  {
    echo "# Hedged plans and same-step shadows, $(date -u '+%Y-%m-%d %H:%M') UTC"
    echo
    echo "Command: \`tools/bench/plan_bench.sh $*\` (gcc -O2, one core of a"
    echo "$(getconf _NPROCESSORS_ONLN)-core $cpu, shared host)."
    echo
    echo "The synthetic traces of the planner benchmark (200 steps, Zipf popularity over shuffled"
    echo "experts, +-30% per expert and +-10% per source every step, 4096 tokens per rank, K = 2),"
    echo "with the hottest expert moving to a random expert every 20 steps (\"jumps\") and without;"
    echo "S = 2E/G. Each step is planned from the previous step's counts and split with its own."
    echo "Cells: imbalance (max rank tokens / mean) mean / p95 / worst over the steps."
    echo "swiftmoe: greedy counts, balanced slots, the load-aware split, as the engine plans today;"
    echo "+ hedge: planned on hedged loads (each expert's load + 1 standard deviation of its recent"
    echo "loads, an EMA at 0.9: smoe_hedge_loads); + shadow: one shadow slot per rank, filled each"
    echo "step from that step's counts (smoe_shadow_plan) under the cost model of an expert of"
    echo "Qwen3-30B-A3B's shape (dim 2048, expert_dim 768: fp32 weights in and gradient out, 37.7 MB"
    echo "per shadow into its rank, a 1/G slice from and to every other rank; 200 TFLOP/s of expert"
    echo "compute per rank against 50 GB/s into and out of a rank); + both: the two. Bytes: the"
    echo "shadows' bytes over the run against the dispatch's (token rows sent to a slot on another"
    echo "rank and their gradients back, fp32 rows of 2048)."
    echo
    sed -n '/^| trace/,$p' "$tmp/out.md"
  } | tee "$out"
  echo "wrote $out"
  exit 0
fi
{
  echo "# Planner and load-aware split, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  echo "Command: \`tools/bench/plan_bench.sh${*:+ $*}\` (gcc -O2, one core of a"
  echo "$(getconf _NPROCESSORS_ONLN)-core $cpu, shared host)."
  echo
  echo "## Time per layer"
  echo
  echo "Greedy counts + balanced slots (src = the previous step's counts) + the load-aware split,"
  echo "Zipf 1.0 routing, 4096 tokens per rank, K = 2; medians of 101 repeats (31 at G >= 1024,"
  echo "5 with --quick)."
  echo "\"table\" is \`smoe_split\` (the whole (G, G*S) table, zeroed and written), \"one row\" is"
  echo "\`smoe_split_row\` (what one rank sends); the baseline is zero-filling the table once."
  echo
  sed -n '1,/^$/p' "$tmp/out.md"
  echo "## Balance"
  echo
  echo "Synthetic traces, 200 steps: Zipf popularity (s = 1.0, 1.5) over shuffled experts, every"
  echo "expert's share x U(0.7, 1.3) every step, each source rank x U(0.9, 1.1), the hottest"
  echo "expert moving to a random expert every 20 steps (10 moves), 4096 tokens per rank, K = 2."
  echo "Each step is planned from the previous step's counts and split with its own. Cells:"
  echo "imbalance (max rank tokens / mean) as mean over all steps (in brackets: over the 190"
  echo "steps without a move; a trace file has none) / p95 / worst. static: one replica each,"
  echo "E/G slots, no split (its S is E/G whatever the row says). symi: proportional counts,"
  echo "contiguous slots, even split, each replica dropping tokens over ceil(all assignments /"
  echo "(G*S)) (capacity factor 1.0); its imbalance counts the computed tokens. eplb: greedy"
  echo "counts, EPLB slots, load-aware split. swiftmoe: greedy counts, balanced slots, load-aware"
  echo "split; no drops."
  echo
  sed -n '/^| trace/,$p' "$tmp/out.md"
} | tee "$out"
echo "wrote $out"
