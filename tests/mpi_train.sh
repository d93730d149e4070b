#!/usr/bin/env bash
# Multi-rank training through mpirun (double build):
#  - static at G = 1, 2, 4: the same per-step losses and final weights (1e-9), with the
#    dense optimizer sharded (the default) and replicated (G = 4);
#  - a validation pass changes nothing that is logged: the losses of a run validating every 5
#    steps equal those of one validating only at the end, bit for bit;
#  - capacity with a huge factor equals dropless bit for bit; with factor 0.5 it drops;
#  - a rank that fails ends the whole job, non-zero, with its message.
# usage: mpi_train.sh path/to/swiftmoe_f64
set -euo pipefail
bin=$1
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun --oversubscribe --bind-to none)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=8 --set training.steps=10 --set training.warmup_steps=2
      --set training.grad_clip=0.5 --set training.eval_every=5 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set placement.policy=static)
fail=0

"$bin" train "${args[@]}" --out "$tmp/g1" 2>/dev/null
for g in 2 4; do "${mpi[@]}" -np $g "$bin" train "${args[@]}" --out "$tmp/g$g" 2>/dev/null; done
"${mpi[@]}" -np 4 "$bin" train "${args[@]}" --set training.dense_optimizer=replicated \
  --out "$tmp/g4_dense_replicated" 2>/dev/null
python3 "$here/compare_runs.py" 1e-9 "$tmp/g1" "$tmp/g2" "$tmp/g4" "$tmp/g4_dense_replicated" || fail=1
python3 - "$tmp/g4" "$tmp/g4_dense_replicated" <<'PY' || fail=1
import json, sys
# the dense AdamW moments: a quarter of them per rank when sharded
s, r = (json.load(open(d + "/summary.json"))["optimizer_bytes_per_rank"] -
        json.load(open(d + "/summary.json"))["expert_optimizer_bytes_per_rank"] for d in sys.argv[1:])
print(f"dense optimizer bytes per rank at G = 4: sharded {s}, replicated {r} ({r / s:.2f}x)")
sys.exit(0 if 3.5 < r / s < 4.01 else 1)
PY

# g1 validates at step 5 (and 10); this run only at step 10
"$bin" train "${args[@]}" --set training.eval_every=0 --out "$tmp/eval_end" 2>/dev/null
python3 "$here/compare_runs.py" 0 "$tmp/g1" "$tmp/eval_end" || fail=1

"${mpi[@]}" -np 2 "$bin" train "${args[@]}" --set placement.policy=capacity \
  --set placement.capacity_factor=100 --out "$tmp/cap_huge" 2>/dev/null
# dropless in effect: bit for bit the same losses and weights (tolerance 0, and cmp)
python3 "$here/compare_runs.py" 0 "$tmp/g2" "$tmp/cap_huge" || fail=1
cmp "$tmp/g2/model.safetensors" "$tmp/cap_huge/model.safetensors" || fail=1
"${mpi[@]}" -np 2 "$bin" train "${args[@]}" --set placement.policy=capacity \
  --set placement.capacity_factor=0.5 --set placement.min_capacity=0 --out "$tmp/cap_low" 2>/dev/null
python3 - "$tmp/cap_low" <<'PY' || fail=1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
s = json.load(open(sys.argv[1] + "/summary.json"))
# each rank has 4 sequences x 32 tokens = 128 tokens, K = 2, E = 8: capacity ceil(0.5*2*128/8) = 16
# per expert per rank, so at most 2 ranks x 8 experts x 16 = 256 of the 512 assignments per layer
# are computed: at least 256 x 2 layers dropped every step
bad = [r["step"] for r in rows if r["dropped_tokens"] < 512]
ok = not bad and s["dropped_tokens"] == sum(r["dropped_tokens"] for r in rows)
print(f"capacity 0.5: {s['dropped_tokens']} assignments dropped in {len(rows)} steps" + ("" if ok else f" FAIL {bad}"))
sys.exit(0 if ok else 1)
PY

set +e
out=$(SMOE_FAIL_AT=1:3 timeout 120 "${mpi[@]}" -np 2 "$bin" train "${args[@]}" --out "$tmp/fail" 2>&1)
rc=$?
set -e
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "\[rank 1\] injected failure at step 3" <<<"$out"; then
  echo "a failing rank ended the job: exit $rc, message shown"
else
  echo "FAIL: failing rank: exit $rc (124 = hung), output:"; echo "$out" | head -20; fail=1
fi
[ $fail -eq 0 ] && echo "mpi_train: all checks passed"
exit $fail
