#!/usr/bin/env bash
# The decoupled optimizer under mpirun:
#  - equivalence (double build): the `random` policy, a new placement every
#    step, at G = 1, 2, 3, 4 with S = ceil(E/G) + 1, and the `swiftmoe` policy
#    at G = 2, 3, 4, 15 steps with weight decay and active clipping = the
#    single-process engine (static, G = 1), 1e-9;
#  - re-placement is free: weights_to_slots bytes per step are the same for a
#    placement that never changes and one that changes every step (same G, S);
#  - memory (float build): the expert optimizer bytes per rank (counted at the
#    allocation; tests/test_shards.c checks that count against the allocator)
#    are the same for both placements.
# usage: mpi_shards.sh path/to/swiftmoe_f64 path/to/swiftmoe
set -euo pipefail
bin64=$1 bin32=$2
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=12 --set training.steps=15 --set training.warmup_steps=2
      --set training.weight_decay=0.1 --set training.grad_clip=0.3 --set training.eval_every=5
      --set training.eval_windows=8 --set metrics.progress=off --set training.threads=1)
fail=0

"$bin64" train "${args[@]}" --set placement.policy=static --out "$tmp/ref" 2>/dev/null
runs=()
for g in 1 2 3 4; do
  s=$(( (8 + g - 1) / g + 1 ))
  "${mpi[@]}" -np $g "$bin64" train "${args[@]}" --set placement.policy=random \
    --set placement.slots_per_rank=$s --out "$tmp/random$g" 2>/dev/null
  runs+=("$tmp/random$g")
done
# the swiftmoe policy (re-planned every step, tokens split over replicas) at G = 2, 3, 4
for g in 2 3 4; do
  "${mpi[@]}" -np $g "$bin64" train "${args[@]}" --set placement.policy=swiftmoe --out "$tmp/swiftmoe$g" 2>/dev/null
  runs+=("$tmp/swiftmoe$g")
done
python3 "$here/compare_runs.py" 1e-9 "$tmp/ref" "${runs[@]}" || fail=1

for p in static random; do
  "${mpi[@]}" -np 2 "$bin32" train "${args[@]}" --set placement.policy=$p \
    --set placement.slots_per_rank=4 --out "$tmp/$p" 2>/dev/null
done
python3 - "$tmp/static" "$tmp/random" "$tmp/random3" <<'PY' || fail=1
import json, sys
static, rnd, rnd3 = sys.argv[1:]
rows = {r: [json.loads(l) for l in open(r + "/metrics.jsonl")] for r in (static, rnd, rnd3)}
fail = []
ws = [x["bytes"]["weights_to_slots"] for x in rows[static]]
wr = [x["bytes"]["weights_to_slots"] for x in rows[rnd]]
if ws != wr or ws[0] == 0:
    fail.append(f"weights_to_slots bytes differ: static {ws[:3]}..., random {wr[:3]}...")
changed = sum(a["replicas"] != b["replicas"] for a, b in zip(rows[rnd3], rows[rnd3][1:]))
if changed < 10:
    fail.append(f"the random placement changed only {changed} times in 15 steps")
mem = [json.load(open(r + "/summary.json"))["expert_optimizer_bytes_per_rank"] for r in (static, rnd)]
if mem[0] != mem[1] or mem[0] <= 0:
    fail.append(f"expert optimizer bytes per rank: static {mem[0]}, random {mem[1]}")
print(f"weights_to_slots bytes per step: {ws[0]} (static) = {wr[0]} (random); "
      f"expert optimizer bytes per rank {mem[0]} for both at G = 2")
for f in fail: print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
[ $fail -eq 0 ] && echo "mpi_shards: all checks passed"
exit $fail
