#!/usr/bin/env bash
# run_lib.sh NAME BUILD_DIR SECONDS: builds the fuzz harness tests/fuzz/fuzz_NAME.c
# of one of the pure decoders with clang (libFuzzer + ASan + UBSan) and runs it
# for SECONDS from an empty corpus (each harness also wraps its input in a
# valid frame, so mutations get past the header and checksum). Fails if the
# fuzzer finds anything, or if clang or libFuzzer is missing.
#   codec  the checkpoint chunk decoder (storage/codec.c)
#   plog   the placement record decoder (ckpt/plog.c)
set -euo pipefail
name=$1 build=$2 secs=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
case $name in
  codec) src=(engine/common.c storage/codec.c) ;;
  plog) src=(engine/common.c engine/arena.c engine/placement.c storage/codec.c ckpt/plog.c) ;;
  *) echo "run_lib.sh: unknown harness '$name' (codec or plog)" >&2; exit 2 ;;
esac
cc=$(command -v clang || command -v clang-14 || true)
[ -n "$cc" ] || { echo "fuzz_$name: FAILED: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
bin=$build/fuzz_$name corpus=$build/fuzz-$name-corpus artifacts=$build/fuzz-$name-artifacts/
mkdir -p "$corpus" "$artifacts"
cd "$root"
"$cc" -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Iengine -Istorage -Ickpt "${src[@]}" "tests/fuzz/fuzz_$name.c" -lzstd -lm -o "$bin"
log=$build/fuzz_$name.log
set +e
"$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" >"$log" 2>&1
rc=$?
set -e
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
if [ $rc -ne 0 ]; then
  echo "fuzz_$name: FAILED: exit $rc after ${execs:-?} executions; input under $artifacts, log $log" >&2
  exit 1
fi
[ -n "$execs" ] || { echo "fuzz_$name: FAILED: no final stats in $log" >&2; exit 1; }
echo "fuzz_$name: $execs executions in $secs s, no crash"
