#!/usr/bin/env bash
# ckpt_kill_loop.sh N [BUILD] [busy]: runs the crash-loop test (ctest -R ckpt_kill,
# ctest's 300 s timeout) N times in a row in BUILD (default build/), with "busy"
# beside a CPU-heavy process (yes > /dev/null); prints each run, then the count
# passed and the slowest run. A failed run's ctest output is kept in /tmp.
set -uo pipefail
n=$1
build=${2:-$(cd "$(dirname "$0")/../.." && pwd)/build}
busy=${3:-}
cd "$build" || exit 1
[ -n "$busy" ] && { yes >/dev/null & hog=$!; trap 'kill $hog' EXIT; }
pass=0 slowest=0
for i in $(seq "$n"); do
  log=$(mktemp /tmp/ckpt_kill_loop.XXXXXX)
  ctest -R '^ckpt_kill$' --timeout 300 --output-on-failure >"$log" 2>&1
  rc=$?
  t=$(grep -o "[0-9.]* sec" "$log" | head -1 | cut -d' ' -f1)
  echo "run $i: $([ $rc -eq 0 ] && echo passed || echo "FAILED (output: $log)") in ${t:-?} s"
  [ $rc -eq 0 ] && { pass=$((pass + 1)); rm -f "$log"; }
  slowest=$(awk -v a="$slowest" -v b="${t:-0}" 'BEGIN { print (b > a ? b : a) }')
done
echo "ckpt_kill: $pass of $n passed${busy:+ beside a CPU-heavy process}; slowest run $slowest s"
