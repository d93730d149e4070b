#!/usr/bin/env bash
# bundle.sh [DIR]: a self-contained swiftmoe for a GPU host that has CUDA and
# nothing else of ours (default DIR: gpu-bundle/, git-ignored; its size
# against the device machine's 64 MiB: tools/gpu/README.md).
#
# Builds the CUDA variant for a portable x86-64-v3 target (a bundle built on
# one processor may run on another) in build-bundle/, then puts in DIR:
#   bin/  swiftmoe, swiftmoe_f64, the GPU tests and benchmarks
#   run.sh and what it reads: the prepared device run (tests/gpu/run.sh):
#         bash DIR/run.sh RESULTS_DIR
#   lib/  every shared library they load that is neither CUDA's (cudart,
#         cuBLAS, NCCL and the driver come from the GPU host) nor the C
#         library's (glibc: the host's must be as new as this machine's);
#         OpenBLAS gzipped (env.sh unpacks it under $TMPDIR, leaving the
#         bundle as carried), so that the bundle stays under the device
#         machine's 64 MiB
#   env.sh  sourced before running: LD_LIBRARY_PATH to lib/ and the host's CUDA
#   data/fortunes  the default corpus (run with --set data.path=DIR/data/fortunes)
#   bin/mpirun, bin/orted, lib/openmpi/, lib/pmix/, share/, etc/
#         this machine's Open MPI 4.1 launcher (Debian's orterun, as mpirun),
#         its daemon, its MCA plugins and PMIx's, their help texts and
#         Open MPI's config files; env.sh points OPAL_* and PMIX_* at them,
#         so that `mpirun -np 4 swiftmoe ...` starts ranks on a host with no
#         MPI of its own (one node: the fabric plugins, UCX, libfabric,
#         verbs, PSM, and OpenSHMEM's are left out; see tools/gpu/README.md)
# The engine's own libraries (RocksDB, OpenBLAS, libuv, zstd, inih, cJSON,
# Open MPI's libmpi) travel as shared objects in lib/ rather than linked
# statically: Debian ships some only as shared objects, and one folder works
# the same for all.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/gpu-bundle}
build=$root/build-bundle
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
[ -x "$nvcc" ] || { echo "bundle.sh: no nvcc at $nvcc (set CUDACXX)" >&2; exit 1; }

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSMOE_CUDA=ON -DSMOE_PORTABLE=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
targets=(swiftmoe swiftmoe_f64 test_cuda_ops test_cuda_dense smoe_gpu_ceilings smoe_expert_gemm
         smoe_step_parts)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/lib" "$out.tmp/data"
cp "$build/swiftmoe" "$build/swiftmoe_f64" "$build/tests/test_cuda_ops" \
  "$build/tests/test_cuda_dense" "$build/tools/bench/smoe_gpu_ceilings" \
  "$build/tools/bench/smoe_expert_gemm" "$build/tools/bench/smoe_step_parts" "$out.tmp/bin/"
# the prepared run (tests/gpu/run.sh) and what it reads
cp "$root"/tests/gpu/run.sh "$root"/tests/gpu/curve.py "$root"/tests/gpu/calibration.py \
  "$root"/tests/gpu/ref_fp32.jsonl "$root"/tests/compare_runs.py "$out.tmp/"
mkdir -p "$out.tmp/configs" && cp "$root"/configs/*.ini "$out.tmp/configs/"
# Open MPI's launcher, relocated by env.sh (OPAL_* and PMIX_* below): Debian
# installs it under /usr, /etc/openmpi and PMIx's own prefix, none of which a
# GPU host has. Component folders come from the installed Open MPI and PMIx.
ompi_dir() { ompi_info --parsable --path "$1" | awk -F: '{print $3}'; }
mpi_plugins=$(ompi_dir pkglibdir) # /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
mpi_help=$(ompi_dir pkgdatadir)   # /usr/share/openmpi
mpi_conf=$(ompi_dir sysconfdir)   # /etc/openmpi
libpmix=$(ldd "$mpi_plugins"/mca_pmix_ext3x.so | awk '$1 ~ /^libpmix\./ {print $3}')
pmix_lib=$(dirname "$(readlink -f "$libpmix")") # /usr/lib/x86_64-linux-gnu/pmix2/lib
cp -L "$(ompi_dir bindir)/orterun" "$out.tmp/bin/mpirun" # what Debian's mpirun links to
cp -L "$(ompi_dir bindir)/orted" "$out.tmp/bin/"          # remote daemon: unused on one node
mkdir -p "$out.tmp/lib/openmpi" "$out.tmp/lib/pmix" "$out.tmp/share/openmpi" \
  "$out.tmp/share/pmix" "$out.tmp/etc"
# every MCA plugin but the network fabrics' (a single node talks over shared
# memory and TCP) and OpenSHMEM's, which pull in UCX, libfabric, verbs, PSM
for f in "$mpi_plugins"/mca_*.so; do
  [[ $(basename "$f") =~ openib|ofi|psm|ucx|_(atomic|memheap|scoll|spml|sshmem)_ ]] ||
    cp -L "$f" "$out.tmp/lib/openmpi/"
done
cp -L "$pmix_lib"/pmix/*.so "$out.tmp/lib/pmix/"
cp -L "$mpi_help"/help-*.txt "$out.tmp/share/openmpi/"
cp -L "$pmix_lib"/../share/pmix/help-*.txt "$out.tmp/share/pmix/"
# Debian's defaults (fabric plugins off, no unused-component warning), hostfile
cp -L "$mpi_conf"/openmpi-mca-params.conf "$mpi_conf"/openmpi-default-hostfile "$out.tmp/etc/"
# shared libraries: all that ldd resolves, minus the GPU host's own
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libcuda\.|libcudart|libcublas|libnccl|libnvidia)'
for b in "$out.tmp"/bin/* "$out.tmp"/lib/openmpi/*.so "$out.tmp"/lib/pmix/*.so; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] || cp -L "$path" "$out.tmp/lib/$name"
done
cp -rL /usr/share/games/fortunes "$out.tmp/data/fortunes" # the default corpus (data.h)
# OpenBLAS (its kernels for every x86 processor: a third of the bundle's
# bytes) travels gzipped; env.sh unpacks it on the host, once
gzip -9 "$out.tmp/lib/libopenblas.so.0"
cat >"$out.tmp/env.sh" <<'SH'
# source this on the GPU host: the bundle's libraries, then the host's CUDA
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# OpenBLAS unpacked outside the bundle (which stays as carried), once
unpacked=${TMPDIR:-/tmp}/swiftmoe-bundle-$(id -u)
if ! cmp -s <(gzip -dc "$here/lib/libopenblas.so.0.gz") "$unpacked/libopenblas.so.0"; then
  mkdir -p "$unpacked" && new=$(mktemp -p "$unpacked") &&
    gzip -dc "$here/lib/libopenblas.so.0.gz" >"$new" && mv -f "$new" "$unpacked/libopenblas.so.0"
fi
cuda=${CUDA_HOME:-/usr/local/cuda}
export LD_LIBRARY_PATH="$unpacked:$here/lib:$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$here/bin:$PATH"
# Open MPI and PMIx look for their plugins, help texts and config files where
# Debian installed them (/usr/lib/x86_64-linux-gnu/openmpi, /usr/share/openmpi,
# /etc/openmpi, /usr/lib/x86_64-linux-gnu/pmix2): here instead. OPAL_PREFIX
# alone would put plugins under lib/x86_64-linux-gnu/openmpi/lib/openmpi3 and
# keep /etc/openmpi, and PMIx's folders are absolute; mpirun hands all of
# these to the ranks it starts.
export OPAL_PREFIX="$here" OPAL_LIBDIR="$here/lib" OPAL_PKGLIBDIR="$here/lib/openmpi" \
  OPAL_PKGDATADIR="$here/share/openmpi" OPAL_SYSCONFDIR="$here/etc"
export PMIX_PKGLIBDIR="$here/lib/pmix" PMIX_PKGDATADIR="$here/share/pmix" \
  PMIX_MCA_mca_base_component_path="$here/lib/pmix"
SH
rm -rf "$out"
mv "$out.tmp" "$out"
du -sh --apparent-size "$out" | awk '{print "bundle.sh: " $2 " (" $1 ")"}'
