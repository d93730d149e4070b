#!/usr/bin/env python3
"""Step time of two builds of swiftmoe on the same run, interleaved so that both see the same
machine load: the demo model (or --set changes) on --ranks MPI ranks, --steps steps per run,
--rounds rounds of A then B. A run's step time is the median of its steps' step_time_s after the
first 5 (metrics.jsonl); a build's figure is the median over its rounds; the ratio is B / A.

    tools/bench/step_ab.py --a OLD_BUILD --b NEW_BUILD [--ranks 4] [--steps 60] [--rounds 3]
                           [--set section.key=value ...] [--b-set section.key=value ...]
                           [--out FILE.md]
--b-set applies to B only (A = B with and without an option: --a and --b the same build).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--a", required=True, help="baseline build folder (holds swiftmoe)")
ap.add_argument("--b", required=True, help="build folder to compare")
ap.add_argument("--ranks", type=int, default=4)
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
ap.add_argument("--b-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
ap.add_argument("--out")
args = ap.parse_args()

env = dict(os.environ, OMP_NUM_THREADS="1")
common = ["--set", f"training.steps={args.steps}", "--set", "training.eval_every=0",
          "--set", "training.eval_windows=8", "--set", "checkpoint.interval=0",
          "--set", "metrics.progress=off"]
for s in args.set:
    common += ["--set", s]


def run(build, tmp, tag):
    out = os.path.join(tmp, tag)
    extra = [a for s in (args.b_set if tag.startswith("b") else []) for a in ("--set", s)]
    cmd = [os.path.join(build, "swiftmoe"), "train", "--nproc", str(args.ranks), "--out", out] + \
        common + extra
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=1800)
    if r.returncode != 0:
        sys.exit(f"step_ab: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    times = [json.loads(l)["step_time_s"] for l in open(os.path.join(out, "metrics.jsonl"))]
    return statistics.median(times[5:])


res = {"a": [], "b": []}
with tempfile.TemporaryDirectory() as tmp:
    for i in range(args.rounds):
        for k in ("a", "b"):
            t = run(getattr(args, k), tmp, f"{k}{i}")
            res[k].append(t)
            print(f"round {i + 1}: {k} median step {t * 1e3:.1f} ms", flush=True)
a, b = statistics.median(res["a"]), statistics.median(res["b"])
lines = [f"| build | median step (ms) | rounds (ms) |", "|---|---|---|",
         f"| A `{args.a}` | {a * 1e3:.1f} | {', '.join(f'{t * 1e3:.1f}' for t in res['a'])} |",
         f"| B `{args.b}` | {b * 1e3:.1f} | {', '.join(f'{t * 1e3:.1f}' for t in res['b'])} |",
         "", f"B / A = {b / a:.3f} ({args.ranks} ranks, {args.steps} steps per run, "
         f"{args.rounds} rounds, --set {' '.join(args.set) or '(none)'}, B also "
         f"{' '.join(args.b_set) or '(nothing)'})"]
print("\n".join(lines))
if args.out:
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
