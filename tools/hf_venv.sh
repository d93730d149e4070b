#!/usr/bin/env bash
# hf_venv.sh [VENV]: makes (once) a Python venv in which Hugging Face transformers can load an
# exported Mixtral (`swiftmoe export RUN --hf DIR`), for tests/sample_hf.py and
# tools/bench/sample_speed.py.  VENV defaults to build/hf-venv under the repository root.
#
# The venv is made by Debian's /usr/bin/python3 with --system-site-packages, so Debian's
# python3-torch (1.13) and python3-numpy are used as they are; only what Debian lacks comes
# from PyPI: transformers < 4.45 (later releases want torch >= 2), safetensors, and numpy < 2
# (already satisfied by Debian's; the pin stops pip from pulling numpy 2, which torch 1.13
# cannot use).  pip runs only when the venv cannot import them yet, so a second call is quick
# and needs no network.  Concurrent calls (ctest -j) wait for each other on VENV.lock.
#
# Prints the venv's python (an absolute path) on its last line; exits 1 with a message naming
# what failed (no python3-venv, pip could not reach PyPI, an import still failing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/build/hf-venv}
sys_python=/usr/bin/python3
pins=('transformers<4.45' 'safetensors' 'numpy<2')
# What the scripts use: torch from Debian, MixtralForCausalLM from transformers.
probe='import numpy, torch, safetensors, transformers
from transformers import MixtralForCausalLM
assert int(numpy.__version__.split(".")[0]) < 2, "numpy " + numpy.__version__
print("torch", torch.__version__, "transformers", transformers.__version__, "numpy", numpy.__version__)'

die() { echo "hf_venv.sh: $*" >&2; exit 1; }

[ -x "$sys_python" ] || die "$sys_python not found (Debian's python3; install python3, python3-venv)"
"$sys_python" -c 'import torch' 2>/dev/null ||
  die "Debian's torch is missing ($sys_python cannot import torch): apt-get install python3-torch python3-numpy"

mkdir -p "$(dirname "$venv")"
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
py=$venv/bin/python

exec 9>"$venv.lock"
flock 9

if [ -x "$py" ] && versions=$("$py" -c "$probe" 2>/dev/null); then
  echo "hf_venv.sh: $venv is ready ($versions)" >&2
  echo "$py"
  exit 0
fi

if [ ! -x "$py" ]; then
  echo "hf_venv.sh: creating $venv (Debian python, --system-site-packages)" >&2
  "$sys_python" -m venv --system-site-packages "$venv" ||
    die "'$sys_python -m venv' failed making $venv (is python3-venv installed?)"
fi

echo "hf_venv.sh: pip install ${pins[*]} into $venv" >&2
log=$venv/pip-install.log
if ! "$py" -m pip install --disable-pip-version-check --progress-bar off "${pins[@]}" >"$log" 2>&1; then
  tail -15 "$log" >&2
  die "pip install ${pins[*]} failed (full log: $log); it needs PyPI (https://pypi.org) to be reachable"
fi

versions=$("$py" -c "$probe" 2>&1) || {
  echo "$versions" | tail -5 >&2
  die "pip installed ${pins[*]}, but $py still cannot import them (pip log: $log)"
}
echo "hf_venv.sh: $venv is ready ($versions)" >&2
echo "$py"
