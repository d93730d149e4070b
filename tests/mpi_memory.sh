#!/usr/bin/env bash
# Per-rank memory by kind (summary.json's memory_bytes_per_rank) for one model
# at G = 1, 2, 4, 8, one step each: prints the table, and checks
#  - what falls as 1/G: the expert slots (S = 2E/G, from G = 2), the expert
#    shards (slices of P/G) and the dense optimizer (sharded moments), within
#    10%;
#  - `swiftmoe memory` (computed without allocating) equals what each run
#    allocated, kind by kind (all but the arenas' scratch, measured only);
#  - with the capacity policy, whose expert rows are bounded by the capacity
#    (smoe_drops_rows_bound), activations and exchange buffers fall as 1/G
#    too (dry run); swiftmoe's no-drop bound G N min(K, S) does not fall.
# usage: mpi_memory.sh path/to/swiftmoe
set -uo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
args=(--set model.dim=32 --set model.n_layers=2 --set moe.num_experts=16 --set moe.expert_dim=64
      --set model.seq_len=32 --set training.global_batch_size=16 --set training.steps=1
      --set training.eval_windows=2 --set metrics.progress=off --set training.threads=1
      --set checkpoint.interval=0)
for g in 1 2 4 8; do
  if ! timeout 120 mpirun --oversubscribe --bind-to none -np $g "$bin" train "${args[@]}" \
    --out "$tmp/g$g" >"$tmp/g$g.log" 2>&1; then
    echo "FAIL: G = $g"; tail -5 "$tmp/g$g.log"; exit 1
  fi
done
"$bin" memory "${args[@]}" --world 1,2,4,8 --json >"$tmp/plan.json" || { echo "FAIL: memory"; exit 1; }
"$bin" memory "${args[@]}" --world 1,2,4,8 --json --set placement.policy=capacity \
  >"$tmp/capacity.json" || { echo "FAIL: memory (capacity)"; exit 1; }
python3 - "$tmp" <<'PY'
import json, sys
runs = {g: json.load(open(f"{sys.argv[1]}/g{g}/summary.json"))["memory_bytes_per_rank"]
        for g in (1, 2, 4, 8)}
plan = json.load(open(f"{sys.argv[1]}/plan.json"))
cap = json.load(open(f"{sys.argv[1]}/capacity.json"))
kinds = list(runs[1])
print("| kind | " + " | ".join(f"G = {g}" for g in runs) + " |")
print("|---|" + "---|" * len(runs))
for k in kinds:
    print(f"| {k} | " + " | ".join(f"{runs[g][k] / 1e3:,.1f} kB" for g in runs) + " |")
bad = []
# expert slots from G = 2 (at G = 1 the default S = 2E holds every expert twice)
for k, base in (("expert_slots", 2), ("expert_shards", 1), ("dense_optimizer", 1)):
    for g in (2, 4, 8):
        if g <= base:
            continue
        ratio = runs[base][k] / runs[g][k]
        if not 0.9 * g / base <= ratio <= 1.1 * g / base:
            bad.append(f"{k}: G = {base} / G = {g} is {ratio:.2f}, want about {g // base}")
for g in runs:
    for k in runs[g]:
        if k != "scratch" and plan[str(g)][k] != runs[g][k]:
            bad.append(f"G = {g} {k}: allocated {runs[g][k]}, swiftmoe memory says {plan[str(g)][k]}")
print("swiftmoe memory (dry run) equals the allocations at G = 1, 2, 4, 8" if not bad else "")
for k in ("activations", "exchange"):
    row = [cap[str(g)][k] for g in (1, 2, 4, 8)]
    print(f"capacity policy, {k} (dry run): " + ", ".join(f"{b / 1e3:,.1f} kB" for b in row))
    for i, g in enumerate((2, 4, 8)):
        ratio = row[0] / row[i + 1]
        if not 0.9 * g <= ratio <= 1.1 * g:
            bad.append(f"capacity {k}: G = 1 / G = {g} is {ratio:.2f}, want about {g}")
for b in bad:
    print("FAIL " + b)
print("mpi_memory: " + ("all checks passed" if not bad else f"{len(bad)} failed"))
sys.exit(1 if bad else 0)
PY
