#!/usr/bin/env python3
"""A GPU run's loss curve against the CPU's reference curve of the same config
(GPU sums in other orders, so the trajectories part slowly; the curves must
not). Passes when: the first 5 steps' losses agree within FIRST relative
(default 1e-3); the mean of the last 20 steps and every validation loss
within TAIL (default 2%). bf16 GEMM operands: run with looser bounds.

    curve.py REF.jsonl RUN/metrics.jsonl [FIRST TAIL]   (prints the curves)
"""
import json, sys

first_tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
tail_tol = float(sys.argv[4]) if len(sys.argv) > 4 else 0.02


def load(path):
    rows = [json.loads(l) for l in open(path)]
    return {r["step"]: r for r in rows}


ref, run = load(sys.argv[1]), load(sys.argv[2])
fail = []
if sorted(ref) != sorted(run):
    sys.exit(f"steps differ: ref has {len(ref)}, run has {len(run)}")
steps = sorted(ref)
print("step   cpu loss   gpu loss   rel diff")
for s in steps:
    a, b = ref[s]["loss"], run[s]["loss"]
    if s % 20 == 0 or s <= 5:
        print(f"{s:4d}  {a:9.5f}  {b:9.5f}  {abs(a - b) / abs(a):9.2e}")
    if s <= 5 and abs(a - b) > first_tol * abs(a):
        fail.append(f"step {s}: {b} vs the CPU's {a}")
tail = steps[-20:]
ma = sum(ref[s]["loss"] for s in tail) / len(tail)
mb = sum(run[s]["loss"] for s in tail) / len(tail)
print(f"last {len(tail)} steps' mean: cpu {ma:.5f}, gpu {mb:.5f}")
if abs(ma - mb) > tail_tol * ma:
    fail.append(f"the last steps' mean {mb:.5f} vs the CPU's {ma:.5f}")
for s in steps:
    if "val_loss" in ref[s]:
        a, b = ref[s]["val_loss"], run[s].get("val_loss", float("nan"))
        print(f"val at {s}: cpu {a:.5f}, gpu {b:.5f}")
        if not abs(a - b) <= tail_tol * a:
            fail.append(f"val at {s}: {b} vs the CPU's {a}")
if fail:
    sys.exit("curve.py: " + "; ".join(fail))
print("curve.py: the GPU's curve follows the CPU's")
