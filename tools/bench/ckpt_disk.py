#!/usr/bin/env python3
"""Disk use of the state store over a run: trains with checkpoints every N steps
and keep K, samples the size of the state folder (every file, as `du -sb`) about
every 0.2 s, and reports it against what the kept checkpoints hold (keep x the
stored bytes of one checkpoint, from `swiftmoe ckpt ls`), and at the end what the
checkpoint copies (state/copy) and the gradient log (`ckpt ls`) hold. Also counts the
checkpoints written (metrics.jsonl) and those announced complete on every rank
(the run's log), and lists the ones kept at the end.

    ckpt_disk.py [--build build] [--ranks 4] [--steps 1000] [--interval 10] [--keep 2]
                 [--set KEY=VALUE ...] [--json PATH] [--md PATH]

The ratio peak / (keep x checkpoint) is the figure to watch: pruned checkpoints
whose blob files are not reclaimed make it grow with the run's length."""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--ranks", type=int, default=4)
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--interval", type=int, default=10)
ap.add_argument("--keep", type=int, default=2)
ap.add_argument("--set", action="append", default=[])
ap.add_argument("--json")
ap.add_argument("--md")
a = ap.parse_args()


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except FileNotFoundError:
                pass
    return total


tmp = tempfile.mkdtemp(prefix="ckpt_disk.")
out = os.path.join(tmp, "run")
bin_ = os.path.join(a.build, "swiftmoe")
cmd = [bin_, "train", "--out", out, "--set", f"training.steps={a.steps}",
       "--set", f"checkpoint.interval={a.interval}", "--set", f"checkpoint.keep={a.keep}",
       "--set", "metrics.progress=off", "--set", "training.eval_every=0"]
for kv in a.set:
    cmd += ["--set", kv]
env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
if a.ranks > 1:
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(a.ranks)] + cmd
t0 = time.time()
p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(out + ".log", "w"))
samples = []  # (seconds, bytes)
state = os.path.join(out, "state")
while p.poll() is None:
    if os.path.isdir(state):
        samples.append((time.time() - t0, du(state)))
    time.sleep(0.2)
if p.returncode != 0:
    sys.exit(f"training failed (exit {p.returncode}); log: {out}.log")
final = du(state)
ls = subprocess.run([bin_, "ckpt", "ls", out], capture_output=True, text=True, check=True).stdout
table = ls.split("\n\n")[0].splitlines()[1:]  # the checkpoints; the gradient log's follows
rows = [l.split() for l in table if l.split() and l.split()[0].isdigit()]
glog = [l.split() for l in ls.split("\n\n")[1].splitlines()[2:] if l.split() and l.split()[0].isdigit()] \
    if "\n\ngradient log" in ls else []
log_bytes = sum(int(r[4]) for r in glog)
log_records = max((int(r[3].rstrip("*")) for r in glog), default=0)
copies = du(os.path.join(state, "copy"))
ckpt_bytes = max(int(r[-4]) for r in rows)  # stored bytes of one checkpoint, all ranks
peak = max(b for _, b in samples)
kept = len(rows)
rows_m = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
written = sum(1 for r in rows_m if r.get("checkpoint", {}).get("write") in ("async", "sync"))
log = open(out + ".log").read()
agreed = len(set(int(w.split()[3]) for w in log.splitlines()
                 if w.startswith("checkpoint of step") and "complete on every rank" in w))
res = {"ranks": a.ranks, "steps": a.steps, "interval": a.interval, "keep": a.keep,
       "checkpoints_written": written, "checkpoints_agreed": agreed,
       "checkpoints_kept": kept, "kept_steps": [int(r[0]) for r in rows],
       "checkpoint_stored_bytes": ckpt_bytes, "peak_bytes": peak,
       "final_bytes": final, "peak_over_kept": peak / (a.keep * ckpt_bytes),
       "final_over_kept": final / (a.keep * ckpt_bytes), "samples": len(samples),
       "wall_s": round(time.time() - t0, 1), "settings": a.set,
       "final_copy_bytes": copies, "final_log_bytes": log_bytes, "final_log_records": log_records}
# disk use at each tenth of the run, to see whether it grows
tenth = [max((b for s, b in samples if s <= (i + 1) * samples[-1][0] / 10), default=0) for i in range(10)]
res["peak_by_tenth_mb"] = [round(b / 1e6, 1) for b in tenth]
line = (f"{a.ranks} ranks, {a.steps} steps, interval {a.interval}, keep {a.keep}: {agreed} of "
        f"{written} checkpoints written announced complete, kept {res['kept_steps']}; one checkpoint "
        f"{ckpt_bytes / 1e6:.1f} MB stored; state folder peak {peak / 1e6:.1f} MB = "
        f"{res['peak_over_kept']:.2f} x keep checkpoints, at the end {final / 1e6:.1f} MB "
        f"({res['final_over_kept']:.2f} x); peak by tenth of the run (MB): "
        f"{res['peak_by_tenth_mb']}")
if copies or log_bytes:
    line += (f"; at the end copies/ {copies / 1e6:.1f} MB, the gradient log {log_bytes / 1e6:.1f} MB "
             f"({log_records} records per rank)")
print(line)
if a.json:
    json.dump(res, open(a.json, "w"), indent=1)
if a.md:
    with open(a.md, "a") as f:
        f.write(f"- `{' '.join(sys.argv[1:])}`: {line}\n")
subprocess.run(["rm", "-rf", tmp])
