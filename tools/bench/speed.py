#!/usr/bin/python3
"""Training speed: swiftmoe against PyTorch eager on the same model, and swiftmoe's model FLOP
utilisation against this machine's BLAS matmul rate, all measured in one run.

    /usr/bin/python3 tools/bench/speed.py [--steps 40] [--rounds 2] [--threads 2] [--json PATH]
                                          [--set section.key=value ...]

Model: the demo model (swiftmoe's built-in defaults = configs/tiny.ini), changed by --set (model
and moe keys, training.global_batch_size are passed to PyTorch too). Each round runs swiftmoe,
then PyTorch in each thread setting below, so both see the same machine load; a tool's figure is
its median over rounds, and PyTorch's is its fastest setting (the baseline gets its best case).
Tokens/s = tokens of the measured steps (all but the first 3) / their summed time. Model FLOPs
per token = 6 x matmul parameters used per token + 12 L H d T (PaLM's convention; attention
counted whole although it is causal), the same formula for both tools. MFU = swiftmoe's model
FLOP/s / the BLAS sgemm rate of a 1024^3 product (smoe_matmul_rate, best of 10, same threads).
Writes a markdown table to tools/bench/results/<date>-speed.md (and JSON with --json).
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--steps", type=int, default=40)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--ranks", type=int, default=0,
                help="also time swiftmoe on this many MPI ranks (--nproc) of threads/ranks threads")
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
ap.add_argument("--json")
ap.add_argument("--out", default=os.path.join(ROOT, "tools", "bench", "results"))
args = ap.parse_args()

# swiftmoe config key -> torch_train.py option
TORCH_OPT = {"model.dim": "--dim", "model.n_layers": "--n-layers", "model.n_heads": "--n-heads",
             "model.n_kv_heads": "--n-kv-heads", "model.seq_len": "--seq-len",
             "model.vocab_size": "--vocab-size", "moe.num_experts": "--num-experts",
             "moe.top_k": "--top-k", "moe.expert_dim": "--expert-dim",
             "training.global_batch_size": "--batch", "model.rope_theta": "--rope-theta"}


def resolved_config():
    """The demo config with --set applied, read back from `swiftmoe config`."""
    out = subprocess.run([f"{args.build}/swiftmoe", "config"], check=True, capture_output=True,
                         text=True).stdout
    cfg, section = {}, None
    for line in out.splitlines():
        line = line.split(";")[0].strip()
        if m := re.match(r"\[(\w+)\]", line):
            section = m.group(1)
        elif "=" in line:
            k, v = (s.strip() for s in line.split("=", 1))
            cfg[f"{section}.{k}"] = v
    for s in args.set:
        k, v = s.split("=", 1)
        cfg[k.strip()] = v.strip()
    return cfg


def flops_per_token(c):
    D, L, H, Hkv, T = (int(c[k]) for k in ("model.dim", "model.n_layers", "model.n_heads",
                                           "model.n_kv_heads", "model.seq_len"))
    E, K, F, V = (int(c[k]) for k in ("moe.num_experts", "moe.top_k", "moe.expert_dim",
                                      "model.vocab_size"))
    d = D // H
    per_layer = 2 * D * H * d + 2 * D * Hkv * d + D * E + K * 3 * D * F
    return 6.0 * (L * per_layer + V * D) + 12.0 * L * H * d * T


def run_swiftmoe(tmp, ranks=1):
    out = os.path.join(tmp, "swiftmoe-run")
    threads = max(1, args.threads // ranks)
    cmd = [f"{args.build}/swiftmoe", "train", "--out", out, "--set", f"training.steps={args.steps}",
           "--set", "training.warmup_steps=2", "--set", "training.eval_every=0", "--set",
           "training.eval_windows=1", "--set", "metrics.progress=off", "--set",
           f"training.threads={threads}"] + (["--nproc", str(ranks)] if ranks > 1 else [])
    for s in args.set:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    measured = rows[3:]
    tokens = sum(r["tokens"] - p["tokens"] for p, r in zip(rows[2:], measured))
    return tokens / sum(r["step_time_s"] for r in measured)


TORCH_SETTINGS = [  # (label, environment, torch threads, OpenBLAS threads)
    ("omp T, blas 1", {}, args.threads, 1),
    ("omp T, blas T, GOMP_SPINCOUNT=1000", {"GOMP_SPINCOUNT": "1000"}, args.threads, args.threads),
    ("omp 1, blas 1", {}, 1, 1),
]


def run_torch(tmp, cfg, env_extra, threads, blas):
    js = os.path.join(tmp, "torch.json")
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tools", "bench", "torch_train.py"), "--steps",
           str(args.steps), "--threads", str(threads), "--blas-threads", str(blas), "--json", js,
           "--warmup-steps", "2"]
    for k, opt in TORCH_OPT.items():
        cmd += [opt, cfg[k]]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(blas), **env_extra)
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.load(open(js))


def matmul_rate():
    out = subprocess.run([f"{args.build}/smoe_matmul_rate", "1024", "10", str(args.threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["gflops"] * 1e9


def main():
    cfg = resolved_config()
    fpt = flops_per_token(cfg)
    ours, ours_ranks, torch_runs, rates = [], [], {s[0]: [] for s in TORCH_SETTINGS}, []
    torch_info = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rates.append(matmul_rate())
            ours.append(run_swiftmoe(tmp))
            print(f"round {r + 1}: matmul {rates[-1] / 1e9:.1f} GFLOP/s, swiftmoe {ours[-1]:.0f} tok/s",
                  end="", flush=True)
            if args.ranks > 1:
                ours_ranks.append(run_swiftmoe(tmp, args.ranks))
                print(f", swiftmoe x{args.ranks} ranks {ours_ranks[-1]:.0f}", end="", flush=True)
            for label, env, t, b in TORCH_SETTINGS:
                res = run_torch(tmp, cfg, env, t, b)
                torch_runs[label].append(res["tokens_per_s"])
                torch_info = res
                print(f", torch [{label}] {res['tokens_per_s']:.0f}", end="", flush=True)
            print()
    ours_tps = statistics.median(ours)
    best_label = max(torch_runs, key=lambda k: statistics.median(torch_runs[k]))
    torch_tps = statistics.median(torch_runs[best_label])
    rate = statistics.median(rates)
    mfu = ours_tps * fpt / rate
    model = ", ".join(f"{k.split('.')[1]}={cfg[k]}" for k in TORCH_OPT if k != "model.rope_theta")
    rows = [("swiftmoe tokens/s", f"{ours_tps:,.0f}"),
            (f"PyTorch eager tokens/s (best setting: {best_label})", f"{torch_tps:,.0f}"),
            ("ratio swiftmoe / PyTorch", f"{ours_tps / torch_tps:.2f}x"),
            ("model GFLOP per token", f"{fpt / 1e9:.4f}"),
            ("swiftmoe model GFLOP/s", f"{ours_tps * fpt / 1e9:.1f}"),
            ("BLAS sgemm 1024^3 GFLOP/s (this machine, same run)", f"{rate / 1e9:.1f}"),
            ("swiftmoe MFU vs measured matmul rate", f"{100 * mfu:.1f}%")]
    if ours_ranks:
        r_tps = statistics.median(ours_ranks)
        rows[3:3] = [(f"swiftmoe on {args.ranks} MPI ranks x {max(1, args.threads // args.ranks)} "
                      "thread(s), tokens/s", f"{r_tps:,.0f}"),
                     (f"ratio swiftmoe ({args.ranks} ranks) / PyTorch", f"{r_tps / torch_tps:.2f}x"),
                     (f"swiftmoe ({args.ranks} ranks) MFU vs measured matmul rate",
                      f"{100 * r_tps * fpt / rate:.1f}%")]
    for label, v in torch_runs.items():
        rows.append((f"PyTorch [{label}] tokens/s (median)", f"{statistics.median(v):,.0f}"))
    stamp = datetime.datetime.now(datetime.timezone.utc)
    md = [f"# Training speed, {stamp:%Y-%m-%d %H:%M} UTC", "",
          f"Command: `/usr/bin/python3 tools/bench/speed.py {' '.join(sys.argv[1:])}`".rstrip(), "",
          f"Model: {model}. {args.steps} steps, {args.rounds} rounds, {args.threads} threads; "
          f"PyTorch {torch_info.get('torch_version')} ({torch_info.get('blas')}).", "",
          "| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    text = "\n".join(md) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{stamp:%Y-%m-%d}-speed.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"swiftmoe_tokens_per_s": ours_tps, "torch_tokens_per_s": torch_tps,
                       "torch_best_setting": best_label, "ratio": ours_tps / torch_tps,
                       "flops_per_token": fpt, "matmul_flops_per_s": rate, "mfu": mfu,
                       "rounds": {"swiftmoe": ours, "swiftmoe_ranks": ours_ranks,
                                  "torch": torch_runs, "matmul": rates},
                       "ranks": args.ranks,
                       "config": cfg}, f, indent=1)


main()
