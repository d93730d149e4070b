#!/usr/bin/env bash
# Many ranks on this machine (oversubscribed: slow per rank, but real processes),
# double build, a tiny model with 64 experts, the swiftmoe policy:
#  - G = 32 (2 slots per rank) trains the same 8 steps as one process: per-step
#    losses and final weights within 1e-9;
#  - G = 16: a run whose rank 7 fails after 5 steps and resumes with --resume auto ends bit
#    for bit equal to an uninterrupted run (tolerance 0, and cmp of the weights).
# Every mpirun is bounded by `timeout`; a failure prints the run's log.
# usage: mpi_many.sh path/to/swiftmoe_f64
set -uo pipefail
bin=$1
here=$(dirname "$0")
. "$here/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(timeout 120 mpirun --oversubscribe --bind-to none)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.num_experts=64 --set moe.expert_dim=48
      --set model.seq_len=16 --set training.global_batch_size=32 --set training.steps=8
      --set training.warmup_steps=2 --set training.eval_every=0 --set training.eval_windows=4
      --set metrics.progress=off --set training.threads=1 --set placement.policy=swiftmoe)
fail=0
run() { # name, then the command; its log kept in $tmp/name.log, shown on failure
  local name=$1
  shift
  echo "mpi_many: $name"
  if ! "$@" >"$tmp/$name.log" 2>&1; then
    echo "FAIL: $name exited $? (124 = timed out); its log:"
    tail -20 "$tmp/$name.log"
    return 1
  fi
}

run g1 "$bin" train "${args[@]}" --set checkpoint.interval=0 --out "$tmp/g1" || fail=1
run g32 "${mpi[@]}" -np 32 "$bin" train "${args[@]}" --set checkpoint.interval=0 \
  --out "$tmp/g32" || fail=1
python3 "$here/compare_runs.py" 1e-9 "$tmp/g1" "$tmp/g32" || fail=1

ck=(--set checkpoint.interval=2)
run g16 "${mpi[@]}" -np 16 "$bin" train "${args[@]}" "${ck[@]}" --out "$tmp/g16" || fail=1
echo "mpi_many: g16_crash (rank 7 fails after 5 steps, after the checkpoint of step 4 (or 2, if 4 was not yet agreed): the job ends non-zero)"
SMOE_FAIL_AT=7:5 "${mpi[@]}" -np 16 "$bin" train "${args[@]}" "${ck[@]}" --out "$tmp/g16_crash" \
  >"$tmp/g16_crash.log" 2>&1
rc=$?
gone "$tmp/g16_crash"
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
  echo "FAIL: the crashing run exited $rc"; tail -20 "$tmp/g16_crash.log"; fail=1
fi
run g16_resume "${mpi[@]}" -np 16 "$bin" train "${args[@]}" "${ck[@]}" --resume auto \
  --out "$tmp/g16_crash" || fail=1
grep -Eo "resumed from the checkpoint of step (2|4)" "$tmp/g16_resume.log" || {
  echo "FAIL: the resumed run did not resume"; fail=1
}
python3 "$here/compare_runs.py" 0 "$tmp/g16" "$tmp/g16_crash" || fail=1
cmp "$tmp/g16/model.safetensors" "$tmp/g16_crash/model.safetensors" || fail=1
[ $fail -eq 0 ] && echo "mpi_many: all checks passed"
exit $fail
