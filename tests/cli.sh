#!/usr/bin/env bash
# CLI exit codes and messages: 0 success, 1 the run failed (data, I/O),
# 2 bad usage (unknown command/option, bad --set, bad config file).
# usage: cli.sh path/to/swiftmoe
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

# expect CODE SUBSTRING -- ARGS...
expect() {
  local code=$1 want=$2
  shift 3
  local out rc
  out=$("$bin" "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq "$code" ] && grep -qF -- "$want" <<<"$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: swiftmoe $* -> exit $rc (want $code), output:"
    echo "$out" | head -5 | sed 's/^/    /'
    echo "    (wanted to see: $want)"
  fi
}

fast=(--set training.steps=1 --set training.warmup_steps=0 --set model.dim=16 --set model.n_layers=1
      --set model.seq_len=16 --set training.global_batch_size=2 --set training.eval_windows=1)

expect 2 "usage: swiftmoe COMMAND" --
expect 0 "commands:" -- --help
expect 0 "swiftmoe 0." -- --version
expect 0 "--set SECTION.KEY=VALUE" -- train --help
expect 2 "unknown command 'bogus'" -- bogus
expect 2 "unknown option '--bogus'" -- train --bogus
expect 2 "option --out needs a value" -- train --out
expect 2 "model.dim=abc" -- train --set model.dim=abc
expect 2 "top_k" -- train --set moe.top_k=9
expect 2 "expected cpu, cuda or guard" -- train --set training.device=gpu
# training.device = cuda here (no GPU; with or without a CUDA build): a run
# failure that says why, before any step
if "$bin" train --help >/dev/null && nvidia-smi >/dev/null 2>&1; then
  echo "(a GPU is present: the no-device message is not checked)"
else
  expect 1 "training.device = cuda" -- train "${fast[@]}" --set training.device=cuda \
    --out "$tmp/cuda"
fi
expect 2 "n_heads" -- train --set model.n_heads=3
expect 2 "unknown" -- train --set model.colour=blue
expect 2 "--set" -- train --set model.dim
expect 2 "/nonexistent/x.ini" -- train --config /nonexistent/x.ini
printf '[model]\ndim = 64\nbogus = 1\n' >"$tmp/bad.ini"
expect 2 "bogus" -- train --config "$tmp/bad.ini"
expect 1 "/nonexistent/data" -- train "${fast[@]}" --out "$tmp/r1" --set data.path=/nonexistent/data
mkdir "$tmp/empty"
expect 1 "$tmp/empty" -- train "${fast[@]}" --out "$tmp/r2" --set data.path="$tmp/empty"
printf 'text\0with a NUL byte\n' >"$tmp/binary.txt"
expect 1 "not a text file" -- train "${fast[@]}" --out "$tmp/r3" --set data.path="$tmp/binary.txt"
printf 'abc\n' >"$tmp/short.txt"
expect 1 "$tmp/short.txt" -- train "${fast[@]}" --out "$tmp/r4" --set data.path="$tmp/short.txt"
head -c 1024 /dev/zero >"$tmp/bad.bin"
expect 1 "magic" -- train "${fast[@]}" --out "$tmp/r5" --set data.path="$tmp/bad.bin"
touch "$tmp/afile"
expect 1 "$tmp/afile" -- train "${fast[@]}" --out "$tmp/afile"
expect 0 "done: 1 steps" -- train "${fast[@]}" --out "$tmp/ok" --set metrics.progress=off
expect 0 "[training]" -- config
expect 0 '| `[model]` | `dim` |' -- config --markdown

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
