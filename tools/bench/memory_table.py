#!/usr/bin/env python3
"""Per-rank memory by kind (summary.json's memory_bytes_per_rank, rank 0's allocations) for one
model at several world sizes: one training step each, under `swiftmoe train --nproc G`.

    tools/bench/memory_table.py [--build build] [--ranks 1,2,4,8,16,32]
                                [--set section.key=value ...] [--out FILE.md]

The default model is the demo's (configs/tiny.ini) with training.global_batch_size=32 (the
batch must divide by every G). Prints a markdown table in MB.
"""
import argparse, json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--ranks", default="1,2,4,8,16,32")
ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
ap.add_argument("--out")
args = ap.parse_args()
sets = ["training.global_batch_size=32"] + args.set + [
    "training.steps=1", "training.eval_windows=1", "checkpoint.interval=0", "metrics.progress=off"]
env = dict(os.environ, OMP_NUM_THREADS="1")
rows = {}
with tempfile.TemporaryDirectory() as tmp:
    for g in [int(x) for x in args.ranks.split(",")]:
        out = os.path.join(tmp, f"g{g}")
        cmd = [os.path.join(args.build, "swiftmoe"), "train", "--nproc", str(g), "--out", out]
        for s in sets:
            cmd += ["--set", s]
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=1200)
        if r.returncode:
            sys.exit(f"memory_table: G = {g} failed:\n{r.stderr[-1500:]}")
        rows[g] = json.load(open(os.path.join(out, "summary.json")))["memory_bytes_per_rank"]
        print(f"G = {g}: {sum(rows[g].values()) / 1e6:.1f} MB per rank", file=sys.stderr, flush=True)
gs = list(rows)
kinds = list(rows[gs[0]])
lines = ["| kind (MB per rank) | " + " | ".join(f"G = {g}" for g in gs) + " |",
         "|---|" + "---|" * len(gs)]
for k in kinds + ["total"]:
    vals = [sum(rows[g].values()) if k == "total" else rows[g][k] for g in gs]
    lines.append(f"| {k} | " + " | ".join(f"{v / 1e6:.2f}" for v in vals) + " |")
lines.append("")
lines.append("--set " + " ".join(sets))
print("\n".join(lines))
if args.out:
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
