#!/usr/bin/env bash
# run_codec.sh BUILD_DIR SECONDS: builds the checkpoint-chunk codec fuzz
# harness with clang (libFuzzer + ASan + UBSan) and runs it for SECONDS from
# an empty corpus (the harness also wraps each input under a valid header, so
# mutations reach zstd and the un-shuffle). Fails if the fuzzer finds
# anything, or if clang or libFuzzer is missing.
set -euo pipefail
build=$1 secs=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
cc=$(command -v clang || command -v clang-14 || true)
[ -n "$cc" ] || { echo "fuzz_codec: FAILED: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
bin=$build/fuzz_codec corpus=$build/fuzz-codec-corpus artifacts=$build/fuzz-codec-artifacts/
mkdir -p "$corpus" "$artifacts"
cd "$root"
"$cc" -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Iengine -Istorage engine/common.c storage/codec.c tests/fuzz/fuzz_codec.c -lzstd -lm -o "$bin"
log=$build/fuzz_codec.log
set +e
"$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" >"$log" 2>&1
rc=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
if [ $rc -ne 0 ]; then
  echo "fuzz_codec: FAILED: exit $rc after ${execs:-?} executions; input under $artifacts, log $log" >&2
  exit 1
fi
[ -n "$execs" ] || { echo "fuzz_codec: FAILED: no final stats in $log" >&2; exit 1; }
echo "fuzz_codec: $execs executions in $secs s, no crash"
