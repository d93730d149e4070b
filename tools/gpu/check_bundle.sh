#!/usr/bin/env bash
# check_bundle.sh [BUNDLE]: the bundle (tools/gpu/bundle.sh, default
# gpu-bundle/) starts 4 ranks with no MPI of the system's: Debian's Open MPI,
# PMIx, libevent and hwloc (libraries, plugins, help texts, config) are
# hidden from this process tree by a private mount namespace, then the
# bundle's mpirun trains 3 steps on 4 ranks of the bundle's swiftmoe on the
# CPU. Root only (unshare -m, mount). Exit 0 when the run completes.
set -euo pipefail
bundle=$(cd "${1:-gpu-bundle}" && pwd)
[ "$(id -u)" = 0 ] || { echo "check_bundle.sh: needs root (unshare -m, mount)" >&2; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
unshare -m bash -s "$bundle" "$out" <<'INNER'
set -euo pipefail
bundle=$1 out=$2
empty=$(mktemp) && chmod 644 "$empty"
for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/openmpi \
         /etc/openmpi /usr/lib/x86_64-linux-gnu/hwloc; do
  [ -d "$d" ] && mount -t tmpfs none "$d"
done
for f in /usr/bin/orterun /usr/bin/orted /usr/bin/ompi_info /usr/bin/opal_wrapper \
         /usr/lib/x86_64-linux-gnu/lib{mpi,open-pal,open-rte,oshmem,mca_common_,pmix,event,hwloc,munge,nl-3}*.so*; do
  if [ -e "$f" ] && [ ! -L "$f" ]; then mount --bind "$empty" "$f"; fi
done
. "$bundle/env.sh"
export OMP_NUM_THREADS=1
timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 4 swiftmoe train \
  --set data.path="$bundle/data/fortunes" --set model.dim=32 --set model.n_layers=1 \
  --set training.steps=3 --set training.global_batch_size=8 --set metrics.progress=off \
  --set training.eval_windows=1 --out "$out/run" </dev/null
echo "check_bundle.sh: 4 ranks trained from the bundle alone"
INNER
