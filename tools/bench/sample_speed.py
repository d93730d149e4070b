#!/usr/bin/env python3
"""Generation speed: `swiftmoe sample` against Hugging Face transformers' generate() on the same
weights, both greedy on one core, measured in one run.

    VENV_PYTHON tools/bench/sample_speed.py path/to/swiftmoe RUN_DIR [--tokens 112] [--rounds 5]
                [--prompt 'Q: What '] [--threads 1] [--json PATH] [--out DIR]

VENV_PYTHON is the python that tools/hf_venv.sh prints (Debian's torch + transformers < 4.45).
RUN_DIR is a byte-level run folder (config.ini + model.safetensors), e.g. runs/demo from
`make demo` (dim 128, 4 layers, 8 experts, top-2, seq_len 128).  It is exported to HF f32 in a
temp folder (`swiftmoe export RUN --hf DIR --dtype f32`) and loaded once, in float32, here.

The model's seq_len is its longest context, so prompt + tokens must fit in it: the default
prompt is 8 bytes and --tokens 112 (120 <= the demo's 128); more than seq_len is an error.
Each round runs, one after the other (so all see the same machine load):
  A  `swiftmoe sample RUN --prompt P --tokens N --temperature 0 --ids --threads T`; its stderr
     line gives the generation time and the prompt's time (model load excluded);
  B  HF `model.generate(ids, max_new_tokens=N, do_sample=False)` with torch.set_num_threads(T);
     tokens/s = N / the time of the generate() call (model load excluded; the 8-token prompt
     is inside it);
  C  HF's bare forward loop with the KV cache (argmax; no generate() machinery): the baseline's
     best case.
Figures are medians over rounds, after one unmeasured warm-up of each.  The ratio is swiftmoe's
prompt + generation rate (N / (prompt time + generation time), as B counts it) over HF's.  The
table also says whether the engine's tokens are HF's (both float32: a difference can only come
from a near-tie, whose HF top-2 gap is printed).  Writes the table to DIR/<date>-sample.md
(DIR: tools/bench/results), and with --json PATH as JSON.
"""
import argparse, configparser, datetime, json, os, platform, re, shutil, statistics, subprocess
import sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("swiftmoe")
ap.add_argument("run_dir")
ap.add_argument("--tokens", type=int, default=112, help="tokens to generate (prompt + tokens <= seq_len)")
ap.add_argument("--prompt", default="Q: What ")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--json")
ap.add_argument("--out", default=os.path.join(ROOT, "tools", "bench", "results"))
args = ap.parse_args()

# Before torch loads: one thread for OpenMP and OpenBLAS (Debian's torch uses the system BLAS).
os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
try:
    import torch
    import transformers
    from transformers import DynamicCache, MixtralForCausalLM
except ImportError as ex:
    sys.exit(f"sample_speed: {ex}; run me with the python that tools/hf_venv.sh prints")
transformers.utils.logging.set_verbosity_error()

STATS = re.compile(r"sample: (\d+) tokens in ([0-9.]+) s, ([0-9.]+) tokens/s "
                   r"\(prompt (\d+) tokens in ([0-9.]+) s")


def die(msg):
    sys.exit(f"sample_speed: {msg}")


def seq_len_of(run_dir):
    ini = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    if not ini.read(os.path.join(run_dir, "config.ini")):
        die(f"{run_dir}/config.ini not found (a run folder, e.g. runs/demo from `make demo`)")
    return ini.getint("model", "seq_len"), ini.getint("model", "vocab_size")


def engine(prompt, n):
    """(ids, generation s, prompt s) of one `swiftmoe sample`, as it reports them on stderr."""
    cmd = [os.path.abspath(args.swiftmoe), "sample", args.run_dir, "--prompt", prompt, "--tokens",
           str(n), "--temperature", "0", "--ids", "--threads", str(args.threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        die(f"{' '.join(cmd)} -> exit {p.returncode}:\n{p.stdout}{p.stderr}")
    m = STATS.search(p.stderr)
    if not m or int(m.group(1)) != n:
        die(f"{' '.join(cmd)}: no 'sample: {n} tokens in ... (prompt ...)' line on stderr:\n{p.stderr}")
    return [int(t) for t in p.stdout.split()], float(m.group(2)), float(m.group(5)), \
        p.stderr.strip().splitlines()[-1]


def hf_generate(model, ids, n):
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False)
    dt = time.perf_counter() - t0
    return out[0, ids.shape[1]:].tolist(), dt


def hf_loop(model, ids, n):
    """Bare greedy loop with a KV cache; also each step's top-2 logit gap (relative), computed
    after the timing."""
    out, logits, cache, x = [], [], DynamicCache(), ids
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(n):
            r = model(x, past_key_values=cache, use_cache=True)
            cache, lg = r.past_key_values, r.logits[0, -1]
            nxt = int(torch.argmax(lg))
            out.append(nxt)
            logits.append(lg)
            x = torch.tensor([[nxt]])
    dt = time.perf_counter() - t0
    lg = torch.stack(logits)
    top2 = torch.topk(lg, 2, dim=1).values
    gaps = ((top2[:, 0] - top2[:, 1]) / lg.abs().max(dim=1).values).tolist()
    return out, dt, gaps


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main():
    seq_len, vocab = seq_len_of(args.run_dir)
    if vocab != 256:
        die(f"{args.run_dir}: vocab_size {vocab}: this bench prompts with bytes (vocab 256)")
    prompt_ids = list(args.prompt.encode())
    n = args.tokens
    if n < 1 or len(prompt_ids) + n > seq_len:
        die(f"prompt ({len(prompt_ids)} tokens) + --tokens {n} must be within the model's "
            f"seq_len {seq_len} (its longest context)")
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="sample_speed.")
    try:
        hf_dir = os.path.join(tmp, "hf")
        subprocess.run([os.path.abspath(args.swiftmoe), "export", args.run_dir, "--hf", hf_dir,
                        "--dtype", "f32"], check=True, capture_output=True)
        model = MixtralForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # No early stop: the config's default eos id (2) is a byte like any other here.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([prompt_ids])

    engine(args.prompt, n)                  # warm-ups (page cache, allocator, lazy init)
    hf_generate(model, ids, n)
    hf_loop(model, ids, n)
    a_gen, a_all, b, c = [], [], [], []
    for r in range(args.rounds):
        e_ids, t_gen, t_prompt, line = engine(args.prompt, n)
        h_ids, t_hf = hf_generate(model, ids, n)
        l_ids, t_loop, gaps = hf_loop(model, ids, n)
        a_gen.append(n / t_gen)
        a_all.append(n / (t_gen + t_prompt))
        b.append(n / t_hf)
        c.append(n / t_loop)
        print(f"round {r + 1}/{args.rounds}: swiftmoe {n / t_gen:,.0f} tokens/s generating, "
              f"{n / (t_gen + t_prompt):,.0f} with the prompt; HF generate() {n / t_hf:,.0f}; "
              f"HF forward loop {n / t_loop:,.0f}", flush=True)
    med = {k: statistics.median(v) for k, v in
           (("swiftmoe_gen", a_gen), ("swiftmoe", a_all), ("hf_generate", b), ("hf_loop", c))}

    if h_ids != l_ids:
        print("warning: HF generate() and HF's own forward loop chose different tokens")
    diff = next((i for i, (x, y) in enumerate(zip(e_ids, h_ids)) if x != y), None)
    if diff is None and len(e_ids) == len(h_ids):
        same = f"yes, all {n}"
    else:
        same = (f"no: first difference at token {diff} (HF's relative top-2 gap there "
                f"{gaps[diff]:.1e})" if diff is not None else f"no: {len(e_ids)} vs {len(h_ids)} ids")
    text = bytes(e_ids).decode("utf-8", "backslashreplace")
    info = {"nproc": os.cpu_count(), "cpu": cpu_model(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "threads": args.threads, "engine_line": line}
    rows = [
        ("swiftmoe sample, generation only (as it reports)", f"{med['swiftmoe_gen']:,.0f}"),
        ("swiftmoe sample, prompt + generation", f"{med['swiftmoe']:,.0f}"),
        ("HF generate(), prompt + generation", f"{med['hf_generate']:,.0f}"),
        ("HF forward loop with KV cache (no generate())", f"{med['hf_loop']:,.0f}"),
        ("**ratio swiftmoe / HF generate()**", f"**{med['swiftmoe'] / med['hf_generate']:.1f}x**"),
        ("ratio swiftmoe / HF forward loop", f"{med['swiftmoe'] / med['hf_loop']:.1f}x"),
        ("same tokens (swiftmoe vs HF, both float32, greedy)", same),
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    md = [f"# Generation speed, {now:%Y-%m-%d %H:%M} UTC", "",
          f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`", "",
          f"Model: {args.run_dir} (seq_len {seq_len}), greedy, prompt {args.prompt!r} "
          f"({len(prompt_ids)} tokens), {n} new tokens, {args.threads} thread(s) each, "
          f"median of {args.rounds} rounds (A/B alternating). Machine: {info['nproc']} cores "
          f"({info['cpu']}); torch {info['torch']}, transformers {info['transformers']}, "
          f"python {info['python']}. The engine's last line: `{line}`.", "",
          "| tokens/s (median) | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    md += ["", f"Generated text: `{text!r}`", ""]
    table = "\n".join(md)
    print("\n" + table)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{now:%Y-%m-%d}-sample.md")
    with open(path, "w") as f:
        f.write(table)
    print(f"wrote {path}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tokens": n, "prompt": args.prompt, "rounds": args.rounds,
                       "tokens_per_s_median": med,
                       "tokens_per_s": {"swiftmoe_gen": a_gen, "swiftmoe": a_all,
                                        "hf_generate": b, "hf_loop": c},
                       "ratio_swiftmoe_hf_generate": med["swiftmoe"] / med["hf_generate"],
                       "ratio_swiftmoe_hf_loop": med["swiftmoe"] / med["hf_loop"],
                       "same_tokens": diff is None and len(e_ids) == len(h_ids),
                       "first_difference": diff, "machine": info}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
