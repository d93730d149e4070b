#!/usr/bin/env python3
"""The rates a GPU run measured, for the cluster cost model, from run.sh's
folder: the ceilings (ceilings.json), the benchmark model's step
(bench/summary.json), with its model FLOP utilisation against the bf16 GEMM
rate R and the fp32 one, and the checkpoint stall per checkpoint as a
fraction of a step (ckpt/summary.json). Prints one JSON object.

    calibration.py OUT_DIR
"""
import json, os, sys

out = sys.argv[1]
cal = {}
try:
    cal["ceilings"] = json.load(open(os.path.join(out, "ceilings.json")))
except (OSError, ValueError) as e:
    sys.exit(f"calibration.py: no ceilings: {e}")
bench = os.path.join(out, "bench", "summary.json")
if os.path.exists(bench):
    s = json.load(open(bench))
    c = cal["ceilings"]
    flops = s["model_flops_per_s"]
    cal["bench_h200"] = {
        "tokens_per_s": s["tokens_per_s"],
        "model_tflops": flops / 1e12,
        "fraction_of_bf16_R": flops / 1e12 / c["bf16_gemm_tflops"],
        "fraction_of_fp32_gemm": flops / 1e12 / c["fp32_gemm_tflops"],
        "precision": s["precision"],
        "gemm_dtype": s.get("gemm_dtype"),
        "first_step_s": s["first_step_s"],
        "memory_bytes": s["memory_bytes_per_rank"],
    }
stall = os.path.join(out, "ckpt", "summary.json")
if os.path.exists(stall):
    s = json.load(open(stall))
    n = max(s["checkpoints"], 1)
    step_s = s["train_time_s"] / max(s["steps"], 1)
    cal["checkpoint_stall"] = {
        "checkpoints": s["checkpoints"],
        "stall_s_per_checkpoint": s["checkpoint_stall_s"] / n,
        "step_s": step_s,
        "stall_fraction_of_a_step": s["checkpoint_stall_s"] / n / step_s,
    }
print(json.dumps(cal, indent=1))
