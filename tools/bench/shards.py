#!/usr/bin/env python3
"""The decoupled optimizer against the usual one: per-step time and bytes of swiftmoe's sharded
expert optimizer (each rank keeps a 1/G slice of every expert's AdamW state; gradients go to
the shards, updated weights to the next placement's slots) against replicated AdamW (every rank
keeps every expert's state; expert gradients are all-reduced), on the demo model, at G = 1, 2, 4
ranks of this machine, alternating the two in each round.

    python3 tools/bench/shards.py [--steps 30] [--rounds 2] [--policy static] [--json PATH]

Step time: median over the measured steps (all but the first 3) and rounds. Bytes: sent per step
by all ranks, per phase, from metrics.jsonl (the comm layer's counters). Optimizer memory: the
expert AdamW state per rank from the allocation (summary.json). Writes
tools/bench/results/<date>-shards.md.
"""
import argparse, datetime, json, os, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--steps", type=int, default=30)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--ranks", default="1,2,4")
ap.add_argument("--policy", default="static", help="static, or random (a new placement every step)")
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--json")
args = ap.parse_args()
PHASES = ["dispatch", "combine", "dense_grad", "counts", "grad_to_shards", "weights_to_slots",
          "dense_weights", "checkpoint_copy", "shadow",
          "other"]


def run(tmp, g, mode):
    out = os.path.join(tmp, f"{mode}{g}")
    cmd = [f"{args.build}/swiftmoe", "train", "--out", out, "--set", f"training.steps={args.steps}",
           "--set", "training.warmup_steps=2", "--set", "training.eval_every=0", "--set",
           "training.eval_windows=1", "--set", "metrics.progress=off", "--set",
           f"training.expert_optimizer={mode}", "--set", f"placement.policy={args.policy}"]
    if g > 1:
        cmd += ["--nproc", str(g)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))][3:]
    summary = json.load(open(os.path.join(out, "summary.json")))
    bytes_ = {p: statistics.median(r["bytes"][p] for r in rows) for p in PHASES}
    return [r["step_time_s"] for r in rows], bytes_, summary


def main():
    ranks = [int(x) for x in args.ranks.split(",")]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for g in ranks:
                for mode in ("sharded", "replicated"):
                    times, b, s = run(tmp, g, mode)
                    key = (g, mode)
                    res.setdefault(key, {"times": [], "bytes": b, "summary": s})["times"] += times
                    print(f"round {rnd + 1}: G={g} {mode}: {statistics.median(times) * 1e3:.1f} ms/step",
                          flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc)
    md = [f"# Sharded vs replicated expert optimizer, {stamp:%Y-%m-%d %H:%M} UTC", "",
          f"Command: `python3 tools/bench/shards.py {' '.join(sys.argv[1:])}`".rstrip(), "",
          f"Demo model (configs/tiny.ini: L 4, E 8, D 128, F 256, 16 x 128 tokens per step), "
          f"policy {args.policy}, {args.steps} steps x {args.rounds} rounds, ranks on one "
          f"{os.cpu_count()}-core machine (threads = cores / ranks). Bytes: sent per step by all "
          f"ranks. Expert optimizer state: AdamW master + exp_avg + exp_avg_sq per rank.", "",
          "| G | optimizer | ms/step | step time vs replicated | expert grads bytes | weights to slots bytes | "
          "dense grads bytes | dispatch + combine bytes | expert optimizer state per rank |",
          "|---|---|---|---|---|---|---|---|---|"]
    out = []
    for g in ranks:
        base = statistics.median(res[(g, "replicated")]["times"])
        for mode in ("sharded", "replicated"):
            r = res[(g, mode)]
            t = statistics.median(r["times"])
            b = r["bytes"]
            mem = r["summary"]["expert_optimizer_bytes_per_rank"]
            md.append(f"| {g} | {mode} | {t * 1e3:.1f} | {t / base:.2f} | {b['grad_to_shards']:,.0f} | "
                      f"{b['weights_to_slots']:,.0f} | {b['dense_grad']:,.0f} | "
                      f"{b['dispatch'] + b['combine']:,.0f} | {mem / 2**20:.2f} MiB |")
            out.append({"G": g, "optimizer": mode, "step_s": t, "bytes": b,
                        "expert_optimizer_bytes_per_rank": mem})
    text = "\n".join(md) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "tools", "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "tools", "bench", "results", f"{stamp:%Y-%m-%d}-shards.md")
    open(path, "w").write(text)
    print(f"wrote {path}")
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)


main()
