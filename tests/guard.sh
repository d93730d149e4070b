#!/usr/bin/env bash
# The engine touches backend memory only through the op table: training on
# the guard backend (training.device = guard: the CPU's ops, with every
# backend buffer unreadable from the host between ops, so a direct access
# dies with SIGSEGV) gives the same bits as on the CPU:
#  - G = 1, 2 and 3 (the data plane staged through host memory, as on a GPU)
#    with the policies swiftmoe, capacity, symi, static and random, sharded
#    and replicated optimizers: the final weights (model.safetensors) and
#    every logged loss equal;
#  - a run failing at step 7 and resumed from its checkpoint (staged,
#    written and restored through the backend's copies; synchronous and
#    asynchronous writes) ends with the CPU's weights: the guard holds
#    staging copies back until stage_fence or stage_wait, as a GPU's side
#    stream may, so a writer or a step that does not wait for them fails;
#  - a start from HF weights (--init-hf) equals the CPU's.
# usage: guard.sh path/to/swiftmoe
set -euo pipefail
bin=$1
here=$(dirname "$0")
tmp=$(mktemp -d)
keep() { echo "guard.sh: failed; logs kept in $tmp" >&2; }
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$tmp"; else keep; fi' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(timeout 300 mpirun --oversubscribe --bind-to none)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=12 --set training.steps=6 --set training.warmup_steps=2
      --set training.eval_every=3 --set training.eval_windows=4 --set metrics.progress=off
      --set training.threads=1)
fail=0

# run NAME NP [args...]: the same run on the CPU and on the guard backend
run() {
  local name=$1 np=$2
  shift 2
  for dev in cpu guard; do
    local cmd=(timeout 300 "$bin")
    [ "$np" -gt 1 ] && cmd=("${mpi[@]}" -np "$np" "$bin")
    if ! "${cmd[@]}" train "${args[@]}" "$@" --set training.device=$dev \
        --out "$tmp/$name.$dev" >"$tmp/$name.$dev.log" 2>&1; then
      echo "FAIL $name on $dev (exit non-zero); log:"; tail -5 "$tmp/$name.$dev.log"; fail=1
      return
    fi
  done
  if cmp -s "$tmp/$name.cpu/model.safetensors" "$tmp/$name.guard/model.safetensors" &&
     python3 "$here/compare_runs.py" 0 "$tmp/$name.cpu" "$tmp/$name.guard" >/dev/null; then
    echo "ok   $name: G = $np, guard == cpu bit for bit"
  else
    echo "FAIL $name: G = $np, guard differs from cpu"; fail=1
  fi
}

run g1 1
run g2 2
run g3_capacity 3 --set placement.policy=capacity --set moe.num_experts=6 \
  --set training.expert_optimizer=replicated
run g2_symi 2 --set placement.policy=symi --set training.dense_optimizer=replicated
run g2_static 2 --set placement.policy=static
run g3_random 3 --set placement.policy=random

# resume: checkpoints every 2 steps (written synchronously, and on the
# writer thread while the next steps run), rank 0 failing at step 7, then
# --resume auto: the weights of an uninterrupted run
"${mpi[@]}" -np 2 "$bin" train "${args[@]}" --set training.steps=9 --out "$tmp/whole" \
  >"$tmp/whole.log" 2>&1 || fail=1
for mode in sync async; do
  ck=(--set training.device=guard --set checkpoint.interval=2 --set checkpoint.mode=$mode
      --set training.steps=9)
  d=$tmp/resume.$mode
  SMOE_FAIL_AT=0:7 "${mpi[@]}" -np 2 "$bin" train "${args[@]}" "${ck[@]}" --out "$d" \
    >"$d.log" 2>&1 && fail=1
  "${mpi[@]}" -np 2 "$bin" train "${args[@]}" "${ck[@]}" --out "$d" --resume auto \
    >>"$d.log" 2>&1 || fail=1
  if grep -q "resumed from the checkpoint of step" "$d.log" &&
     cmp -s "$tmp/whole/model.safetensors" "$d/model.safetensors"; then
    echo "ok   failed at step 7, resumed ($mode checkpoints): guard == cpu bit for bit" \
      "($(grep -o 'resumed from the checkpoint of step [0-9]*' "$d.log"))"
  else
    echo "FAIL failed at step 7 and resumed ($mode checkpoints): differs from the CPU"; fail=1
  fi
done

# HF weights in: the G = 1 run's final weights as the start
"$bin" export "$tmp/g1.cpu" --hf "$tmp/hf" >"$tmp/export.log" 2>&1
run from_hf 2 --init-hf "$tmp/hf" --set training.steps=2

exit $fail
