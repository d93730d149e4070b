#!/usr/bin/env bash
# End to end: a short training run on the built-in corpus whose loss falls,
# whose run folder is complete, and which is reproducible: re-running from
# the run's own resolved config.ini gives the same losses, bit for bit.
# usage: e2e.sh path/to/swiftmoe
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=(--set model.dim=64 --set model.n_layers=2 --set model.seq_len=64 --set moe.expert_dim=128
      --set training.global_batch_size=8 --set training.steps=80 --set training.warmup_steps=10
      --set training.eval_every=40 --set training.eval_windows=32 --set metrics.progress=off)
"$bin" train "${args[@]}" --out "$tmp/a"
"$bin" train --config "$tmp/a/config.ini" --out "$tmp/b" 2>/dev/null
python3 - "$tmp/a" "$tmp/b" <<'PY'
import json, sys
a, b = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(a + "/metrics.jsonl")]
summary = json.load(open(a + "/summary.json"))
fail = []
if len(rows) != 80: fail.append(f"{len(rows)} metrics lines, want 80")
keys = {"step", "loss", "lr", "grad_norm", "aux_loss", "tokens", "tokens_per_s", "step_time_s", "expert_counts"}
if not keys <= set(rows[0]): fail.append(f"missing keys {keys - set(rows[0])}")
if len(rows[0]["expert_counts"]) != 2 or sum(rows[0]["expert_counts"][0]) != 8 * 64 * 2:
    fail.append("expert_counts must be (layers, experts) summing to tokens * top_k")
first = sum(r["loss"] for r in rows[:10]) / 10
last = sum(r["loss"] for r in rows[-10:]) / 10
if not last < first - 1.0: fail.append(f"loss did not fall: first 10 steps {first:.3f}, last 10 {last:.3f}")
vals = [r["val_loss"] for r in rows if "val_loss" in r]
if len(vals) != 2 or not vals[1] < summary["first_val_loss"] - 1.0:
    fail.append(f"val loss did not fall: step 0 {summary['first_val_loss']}, then {vals}")
again = [json.loads(l)["loss"] for l in open(b + "/metrics.jsonl")]
if again != [r["loss"] for r in rows]: fail.append("rerun from config.ini gave different losses")
print(f"loss {first:.3f} -> {last:.3f}, val {summary['first_val_loss']:.3f} -> {vals[-1]:.3f}")
for f in fail: print("FAIL:", f)
sys.exit(1 if fail else 0)
PY
