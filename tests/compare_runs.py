#!/usr/bin/env python3
"""Compares training runs for the equivalence tests: per-step losses and final weights
(model.safetensors, F64 or F32) of each run against the first, as a worst relative difference
(per tensor, scaled by the tensor's largest value). Standard library only.

    compare_runs.py TOL RUN_A RUN_B [RUN_C ...]    exit 0 when all are within TOL
"""
import json, struct, sys


def losses(run):
    return [json.loads(line)["loss"] for line in open(run + "/metrics.jsonl")]


def weights(run):
    raw = open(run + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        fmt = {"F64": "d", "F32": "f"}[t["dtype"]]
        b, e = t["data_offsets"]
        out[name] = struct.unpack("<%d%s" % ((e - b) // struct.calcsize(fmt), fmt), raw[8 + n + b:8 + n + e])
    return out


def main():
    tol, runs = float(sys.argv[1]), sys.argv[2:]
    la, wa = losses(runs[0]), weights(runs[0])
    worst = 0.0
    for run in runs[1:]:
        lb, wb = losses(run), weights(run)
        if len(lb) != len(la) or set(wb) != set(wa):
            print(f"FAIL {run}: {len(lb)} steps / {len(wb)} tensors vs {len(la)} / {len(wa)}")
            return 1
        lrel = max(abs(x - y) / max(abs(x), 1e-300) for x, y in zip(la, lb))
        wrel = max(max(abs(x - y) for x, y in zip(wa[k], wb[k])) / max(max(map(abs, wa[k])), 1e-300)
                   for k in wa)
        print(f"{run}: per-step loss worst rel diff {lrel:.3g}, final weights {wrel:.3g} (vs {runs[0]})")
        worst = max(worst, lrel, wrel)
    ok = worst <= tol
    print(f"{'PASS' if ok else 'FAIL'}: worst relative difference {worst:.3g} (tolerance {tol:g})")
    return 0 if ok else 1


sys.exit(main())
