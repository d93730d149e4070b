#!/usr/bin/env bash
# A full disk: training into a 200 KB tmpfs must fail with a clear "No space
# left on device" naming the file, exit 1, and leave no partial weights file
# (writes go through a .tmp file and a rename). Needs root for the mount;
# without it ctest reports the test as skipped (exit 77), not passed.
# usage: disk_full.sh path/to/swiftmoe
set -uo pipefail
bin=$1
[ "$(id -u)" = 0 ] || { echo "disk_full: needs root to mount a small tmpfs"; exit 77; }
dir=$(mktemp -d)
trap 'umount "$dir" 2>/dev/null; rmdir "$dir"' EXIT
mount -t tmpfs -o size=200k tmpfs "$dir" || { echo "disk_full: cannot mount a tmpfs"; exit 77; }
out=$("$bin" train --set model.dim=64 --set training.steps=3 --set training.warmup_steps=1 \
  --set metrics.progress=off --set training.eval_windows=4 --out "$dir/run" 2>&1)
rc=$?
fail=0
[ $rc -eq 1 ] || { echo "FAIL: exit $rc, want 1"; fail=1; }
grep -q "cannot write $dir/run/model.safetensors: No space left on device" <<<"$out" ||
  { echo "FAIL: no clear message; output:"; tail -3 <<<"$out"; fail=1; }
grep -q "^done:" <<<"$out" && { echo "FAIL: said done although the weights were not saved"; fail=1; }
ls "$dir/run" | grep -q "safetensors" && { echo "FAIL: a partial weights file was left"; fail=1; }
[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
