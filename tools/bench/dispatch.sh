#!/usr/bin/env bash
# Token exchange (dispatch + combine, one MoE layer, forward) against the local
# expert compute, at G = 2 and 4 ranks on this machine, for several token
# counts per rank (D 128, F 256, E 8, K 2, uniform routing, 1 thread per
# rank). Prints the table and writes tools/bench/results/<date>-dispatch.md.
# usage: tools/bench/dispatch.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
out="$root/tools/bench/results/$(date -u +%Y-%m-%d)-dispatch.md"
{
  echo "# Dispatch + combine vs expert compute, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  echo "Command: \`tools/bench/dispatch.sh\`. One MoE layer forward: plan (counts all-gather) +"
  echo "dispatch (all-to-all-v) + combine (reverse all-to-all-v) against the expert MLPs of the"
  echo "rank's slots; D 128, F 256, E 8, K 2, uniform routing, 1 thread per rank, ranks on one"
  echo "$(getconf _NPROCESSORS_ONLN)-core machine (Open MPI shared memory). Medians of 15 repeats of the slowest rank."
  echo
  for g in 2 4; do
    mpirun --oversubscribe --bind-to none -np $g "$build/tools/bench/dispatch_bench" 2>/dev/null |
      { [ $g -eq 2 ] && cat || tail -n +3; }
  done
} | tee "$out"
echo "wrote $out"
