#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS: builds the safetensors fuzz harness with clang
# (libFuzzer + ASan + UBSan), writes a seed corpus into BUILD_DIR/fuzz-corpus
# and fuzzes for SECONDS. Exits non-zero if the fuzzer finds a crash, a leak
# or undefined behaviour (the input is kept under BUILD_DIR/fuzz-artifacts),
# or if clang or libFuzzer is missing: a fuzz test that cannot run fails.
# CC=... picks another clang.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
seconds=$2
case $seconds in
  '' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$build"
build=$(cd "$build" && pwd)
bin=$build/fuzz_safetensors
corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts/

cc=${CC:-}
if [ -z "$cc" ] || ! "$cc" --version 2>/dev/null | grep -q clang; then
  cc=$(command -v clang || command -v clang-14 || true)
fi
if [ -z "$cc" ]; then
  echo "fuzz_safetensors: FAILED: clang not found; libFuzzer needs clang (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 1
fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "fuzz_safetensors: FAILED: python3 not found (it writes the seed corpus)" >&2
  exit 1
fi

cd "$root"
if ! "$cc" -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all -Iengine engine/common.c engine/safetensors.c \
  tests/fuzz/fuzz_safetensors.c -lcjson -lm -o "$bin"; then
  echo "fuzz_safetensors: FAILED: $cc could not build the harness (libFuzzer missing? Debian: libclang-rt-dev; cJSON: libcjson-dev)" >&2
  exit 1
fi

# Seeds: raw files (8-byte length, header, data) and the harness's framed form
# (header JSON, NUL, data; see fuzz_safetensors.c), valid and malformed.
mkdir -p "$corpus" "$artifacts"
"$python" - "$corpus" <<'EOF'
import json, os, struct, sys

out = sys.argv[1]

def header(tensors, metadata=None, pad=True):
    h = {}
    if metadata is not None:
        h["__metadata__"] = metadata
    at, blobs = 0, []
    for name, dtype, shape, blob in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        at += len(blob)
        blobs.append(blob)
    text = json.dumps(h, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return text, b"".join(blobs)

def write(name, text, data, raw=True):
    blob = struct.pack("<Q", len(text)) + text + data if raw else text + b"\0" + data
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)

valid = {
    "empty": ([], None),
    "meta_only": ([], {"format": "pt"}),
    "f32": ([("w", "F32", [2, 3], struct.pack("<6f", 1, 2, 3, -4, 0.5, 1e-3))], {"format": "pt"}),
    "mixed": ([("a.weight", "BF16", [4], struct.pack("<4H", 0x3F80, 0x7F80, 0xFFC0, 0x0001)),
               ("b", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0x8000, 0x7C00, 0x03FF)),
               ("c", "F64", [], struct.pack("<d", 3.25)),
               ("z", "F32", [0, 5], b"")], {"format": "pt", "producer": "seed"}),
    "scalar": ([("s", "F32", [], struct.pack("<f", 7.0))], None),
}
for name, (tensors, meta) in valid.items():
    text, data = header(tensors, meta)
    write("valid_" + name, text, data)
    write("framed_" + name, text, data, raw=False)

# reversed offsets (header order differs from data order), still valid
h = {"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
     "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
write("framed_reordered", json.dumps(h).encode(), struct.pack("<2f", 1, 2), raw=False)

bad = {
    "overlap": {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
    "dtype": {"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}},
    "shape": {"a": {"dtype": "F32", "shape": [-1, 1.5], "data_offsets": [0, 4]}},
    "meta": {"__metadata__": {"k": 1}, "a": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}},
}
for name, h in bad.items():
    write("framed_bad_" + name, json.dumps(h).encode(), b"\0" * 12, raw=False)
write("bad_truncated", json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode(), b"\0" * 4)
with open(os.path.join(out, "bad_short"), "wb") as f:
    f.write(b"\x10\0\0")
EOF

log=$build/fuzz_safetensors.log
start=$(date +%s)
set +e
"$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=20 -rss_limit_mb=4096 \
  -artifact_prefix="$artifacts" "$corpus" >"$log" 2>&1
rc=$?
set -e
elapsed=$(($(date +%s) - start))
execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$log" >&2
  echo "fuzz_safetensors: FAILED: the fuzzer exited with $rc after ${execs:-?} executions in ${elapsed} s; crashing input under $artifacts, full log $log" >&2
  exit 1
fi
if [ -z "$execs" ]; then
  tail -n 20 "$log" >&2
  echo "fuzz_safetensors: FAILED: no final stats in $log" >&2
  exit 1
fi
echo "fuzz_safetensors: $execs executions in $elapsed s, no crash"
