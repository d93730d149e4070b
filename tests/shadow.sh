#!/usr/bin/env bash
# Same-step shadows in training (placement.shadow_slots, double build,
# mpirun): a run of 10 steps on one process is the reference (one rank holds
# every expert: no shadows); the same run on 2, 3 and 4 ranks with one shadow
# slot per rank and shadows that pay from any row saved:
#  - every step's loss and the final weights within 1e-9 of the reference,
#    no token dropped;
#  - shadows happened (metrics.jsonl's "shadows"), each step's "shadow" bytes
#    are exactly the weights its shadows received, and the 4-rank run's mean
#    imbalance is below the same run's without shadows;
#  - killed at step 7 and resumed from its step-5 checkpoint it ends bitwise
#    equal to the uninterrupted run;
#  - `swiftmoe ckpt replay` reproduces every logged plan (the plans leave the
#    shadow slots empty).
# usage: shadow.sh path/to/swiftmoe_f64
set -uo pipefail
bin=$1
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
keep_logs
args=(--set model.dim=64 --set moe.expert_dim=96 --set training.steps=10
      --set training.warmup_steps=2 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=5
      --set training.global_batch_size=12)
shadows=(--set placement.shadow_slots=1 --set placement.shadow_rows=0)
# field RUN KEY: a number from RUN's summary.json
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1] + "/summary.json"))[sys.argv[2]])' "$1" "$2"; }

"$bin" train "${args[@]}" "${shadows[@]}" --out "$tmp/g1" >"$tmp/g1.log" 2>&1 || bad "1 process"
for G in 2 3 4; do
  mpi $G "$bin" train "${args[@]}" "${shadows[@]}" --out "$tmp/g$G" >"$tmp/g$G.log" 2>&1 \
    || bad "$G ranks: $(tail -3 "$tmp/g$G.log")"
  sent=$(python3 -c 'import json,sys; print(sum(json.loads(l)["bytes"]["shadow"] for l in open(sys.argv[1])))' "$tmp/g$G/metrics.jsonl")
  if r=$(same "$tmp/g1" "$tmp/g$G") && [ "$(field "$tmp/g$G" dropped_tokens)" = 0 ]; then
    ok "$G ranks with shadows ($sent shadow bytes): $r, no token dropped"
  else bad "$G ranks: $r"; fi
done
# every step's shadow bytes: each shadow's expert, 3 x 64 x 96 doubles, as 4 slices of 4608,
# 3 of them from the other ranks
python3 - "$tmp/g4/metrics.jsonl" <<'PY' && ok "the 4-rank run placed shadows, 110592 bytes each" || bad "shadow bytes"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert sum(r["shadows"] for r in rows) > 0, "no shadow"
for r in rows:
    assert r["bytes"]["shadow"] == r["shadows"] * 3 * 4608 * 8, (r["step"], r["shadows"], r["bytes"]["shadow"])
PY
mpi 4 "$bin" train "${args[@]}" --out "$tmp/plain" >"$tmp/plain.log" 2>&1 || bad "4 ranks without shadows"
with=$(field "$tmp/g4" mean_imbalance) without=$(field "$tmp/plain" mean_imbalance)
python3 -c "import sys; sys.exit(0 if $with < $without else 1)" \
  && ok "mean imbalance on 4 ranks: $with with shadows, $without without" \
  || bad "shadows did not lower the imbalance: $with against $without"

SMOE_FAIL_AT=0:7 mpi 4 "$bin" train "${args[@]}" "${shadows[@]}" --out "$tmp/killed" >/dev/null 2>&1 \
  && bad "the injected failure did not fail"
gone "$tmp/killed"
mpi 4 "$bin" train "${args[@]}" "${shadows[@]}" --out "$tmp/killed" --resume auto >"$tmp/resume.log" 2>&1 \
  || bad "resume: $(tail -3 "$tmp/resume.log")"
python3 - "$tmp/g4" "$tmp/killed" <<'PY' && ok "killed at 7, resumed: every loss bitwise equal" || bad "the resumed run differs"
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(d + "/metrics.jsonl")] for d in sys.argv[1:])
sys.exit(0 if a == b and len(a) == 10 else 1)
PY
cmp -s "$tmp/g4/model.safetensors" "$tmp/killed/model.safetensors" \
  && ok "and its final weights byte for byte" || bad "the resumed run's weights differ"
"$bin" ckpt replay "$tmp/g4" >"$tmp/audit.txt" 2>&1 && grep -q "every one reproduced exactly" "$tmp/audit.txt" \
  && ok "ckpt replay: $(grep -o '[0-9]* plans.*exactly' "$tmp/audit.txt")" || bad "audit: $(tail -2 "$tmp/audit.txt")"

echo "shadow: $pass passed, $fail failed"
[ $fail -eq 0 ]
