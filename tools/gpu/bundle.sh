#!/usr/bin/env bash
# bundle.sh [DIR]: a self-contained swiftmoe for a GPU host that has CUDA and
# nothing else of ours (default DIR: gpu-bundle/, git-ignored, small enough
# to carry to the device machine).
#
# Builds the CUDA variant for a portable x86-64-v3 target (a bundle built on
# one processor may run on another) in build-bundle/, then puts in DIR:
#   bin/  swiftmoe, swiftmoe_f64, the GPU tests and benchmarks
#   run.sh and what it reads: the prepared device run (tests/gpu/run.sh):
#         bash DIR/run.sh RESULTS_DIR
#   lib/  every shared library they load that is neither CUDA's (cudart,
#         cuBLAS, NCCL and the driver come from the GPU host) nor the C
#         library's (glibc: the host's must be as new as this machine's)
#   env.sh  sourced before running: LD_LIBRARY_PATH to lib/ and the host's CUDA
#   data/fortunes  the default corpus (run with --set data.path=DIR/data/fortunes)
# The engine's own libraries (RocksDB, OpenBLAS, libuv, zstd, inih, cJSON,
# Open MPI's libmpi) travel as shared objects in lib/ rather than linked
# statically: Debian ships some only as shared objects, and one folder works
# the same for all. Multi-rank runs on the GPU host need a launcher there
# (mpirun), which this bundle does not carry yet: single-rank runs only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/gpu-bundle}
build=$root/build-bundle
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
[ -x "$nvcc" ] || { echo "bundle.sh: no nvcc at $nvcc (set CUDACXX)" >&2; exit 1; }

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMOE_CUDA=ON -DSMOE_PORTABLE=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
targets=(swiftmoe swiftmoe_f64 test_cuda_ops test_cuda_dense smoe_gpu_ceilings smoe_expert_gemm)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/lib" "$out.tmp/data"
cp "$build/swiftmoe" "$build/swiftmoe_f64" "$build/tests/test_cuda_ops" \
  "$build/tests/test_cuda_dense" "$build/tools/bench/smoe_gpu_ceilings" \
  "$build/tools/bench/smoe_expert_gemm" "$out.tmp/bin/"
# the prepared run (tests/gpu/run.sh) and what it reads
cp "$root"/tests/gpu/run.sh "$root"/tests/gpu/curve.py "$root"/tests/gpu/calibration.py \
  "$root"/tests/gpu/ref_fp32.jsonl "$root"/tests/compare_runs.py "$out.tmp/"
mkdir -p "$out.tmp/configs" && cp "$root"/configs/*.ini "$out.tmp/configs/"
# shared libraries: all that ldd resolves, minus the GPU host's own
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libcuda\.|libcudart|libcublas|libnccl|libnvidia)'
for b in "$out.tmp"/bin/*; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] || cp -L "$path" "$out.tmp/lib/$name"
done
cp -rL /usr/share/games/fortunes "$out.tmp/data/fortunes" # the default corpus (data.h)
cat >"$out.tmp/env.sh" <<'SH'
# source this on the GPU host: the bundle's libraries, then the host's CUDA
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cuda=${CUDA_HOME:-/usr/local/cuda}
export LD_LIBRARY_PATH="$here/lib:$cuda/lib64:${LD_LIBRARY_PATH:-}"
export PATH="$here/bin:$PATH"
SH
rm -rf "$out"
mv "$out.tmp" "$out"
du -sh "$out" | awk '{print "bundle.sh: " $2 " (" $1 ")"}'
