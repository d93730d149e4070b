#!/usr/bin/python3
"""`swiftmoe eval` against an independent PyTorch forward, through the HF export.

    /usr/bin/python3 tests/hf_eval_torch.py path/to/swiftmoe       exit 0 ok, 1 over tolerance or error

1. Trains a tiny model with swiftmoe (30 steps, so the weights are not the random init), exports
it with `swiftmoe export --hf`, and reads the export back HERE with json + struct + numpy only
(not through the engine): config.json gives the architecture, model.safetensors the weights.
The loss is recomputed by tests/ref_torch.py's float64 `forward` (an independent implementation
of /work/shared/MIXTRAL.md) with engine/eval.h's definition: mean cross-entropy over every
consecutive non-overlapping window of seq_len + 1 tokens of a text file (bytes are tokens), the
last partial window dropped; and compared with `swiftmoe eval --init-hf HF --data F`, at the
engine's default window (it reports it; 128) and at --seq-len 32.
2. Writes two HF folders here, not with swiftmoe (F32 and BF16; MixtralConfig-style config.json
with rope_theta 1e6 and no head_dim; header padded as HF's writer does; random weights of std 0.3
so that every part of the model moves the loss) and compares the same way at --seq-len 32.
3. Shows the comparison can fail: references with plausible mapping bugs (RoPE base 1e4 instead of
the config's 1e6; HF w1/w3 exchanged) must differ from the engine by more than the tolerance.

Tolerance: relative difference of the mean loss <= 1e-4.  The engine computes in float32 from the
same weights (F32/BF16 widen to float64 exactly on the reference side), so the honest difference
is float32 rounding only: ~6e-8 per operation, compounded through a few dozen ops per layer and
sums of D..T terms, i.e. ~1e-6 relative per token at most, and these errors are independent from
token to token, so they mostly cancel in the mean over ~30k tokens (observed: 1e-10..5e-9).  A
top-k choice flipped by rounding in a near-tie (the smallest top-k score gap is printed) changes
one token's output between two nearly equally weighted experts: ~1e-6 on the mean at most.  1e-4
is far above both, while the mapping bugs of part 3 move the loss by ~5e-3 (on a briefly trained
tiny model they move it far less, hence the random weights of part 2).
"""
import json, os, shutil, struct, subprocess, sys, tempfile, time
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_torch  # noqa: E402  (float64 default dtype is set on import)

TOL = 1e-4
TEXT = "/usr/share/games/fortunes/computers"
TEXT_BYTES = 30000


def read_safetensors(path):
    """name -> float64 numpy array; F32 and BF16 (what `swiftmoe export` writes)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        buf = data[b:e]
        if t["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4")
        elif t["dtype"] == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {t['dtype']} not handled here")
        out[name] = a.astype(np.float64).reshape(t["shape"])
    return out


def ref_config(hf, seq_len, batch):
    """tests/ref_torch.py's config dict from an HF Mixtral config.json."""
    assert hf["model_type"] == "mixtral" and hf.get("hidden_act", "silu") == "silu", hf
    D, H = hf["hidden_size"], hf["num_attention_heads"]
    assert hf.get("head_dim") in (None, D // H), "head_dim must be hidden_size / heads"
    assert hf.get("sliding_window") is None or hf["sliding_window"] >= seq_len
    return {"vocab_size": hf["vocab_size"], "dim": D, "n_layers": hf["num_hidden_layers"],
            "n_heads": H, "n_kv_heads": hf.get("num_key_value_heads", H), "seq_len": seq_len,
            "batch": batch, "num_experts": hf["num_local_experts"], "top_k": hf["num_experts_per_tok"],
            "expert_dim": hf["intermediate_size"], "rope_theta": float(hf.get("rope_theta", 1e6)),
            "rms_norm_eps": float(hf.get("rms_norm_eps", 1e-5)),
            "tie_word_embeddings": bool(hf.get("tie_word_embeddings", False)),
            "aux_loss_coef": 0.0, "z_loss_coef": 0.0, "expert_bias": False}


def torch_eval(hf, W, tokens, seq_len, chunk=64):
    """Mean CE over consecutive non-overlapping windows of seq_len + 1 tokens (eval.h)."""
    n_win = len(tokens) // (seq_len + 1)
    win = torch.tensor(tokens[:n_win * (seq_len + 1)].reshape(n_win, seq_len + 1), dtype=torch.long)
    total, margin = 0.0, float("inf")
    with torch.no_grad():
        for s in range(0, n_win, chunk):
            x = win[s:s + chunk]
            c = ref_config(hf, seq_len, x.shape[0])
            _, loss, m = ref_torch.forward(c, W, x, None)
            total += loss["ce"].item() * x.shape[0] * seq_len      # ce is the chunk's token mean
            margin = min(margin, m)
    return total / (n_win * seq_len), n_win, margin


def run(cmd, what):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{what} -> exit {p.returncode}:\n{p.stdout}{p.stderr}")
    return p.stdout


def engine_eval(bin_, hf_dir, data, seq_len=None):
    cmd = [bin_, "eval", "--init-hf", hf_dir, "--data", data]
    if seq_len:
        cmd += ["--seq-len", str(seq_len)]
    out = run(cmd, " ".join(cmd))
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def to_bf16(a):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (finite values)."""
    u = np.ascontiguousarray(a, dtype="<f4").view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def write_foreign_hf(out_dir, dtype, seed=0, std=0.3):
    """An HF Mixtral folder written here, not by swiftmoe, the way HF's tools write one: a
    MixtralConfig-style config.json (rope_theta 1e6 as Mixtral's, no head_dim, a long
    max_position_embeddings) and a safetensors file with tensors in name order and the header
    padded with spaces to 8 bytes.  Random weights of std 0.3 (norm weights near 1) make every
    part of the model matter to the loss, unlike a briefly trained tiny model."""
    hf = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 256,
          "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
          "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-05,
          "tie_word_embeddings": False, "num_local_experts": 8, "num_experts_per_tok": 2,
          "sliding_window": None, "router_aux_loss_coef": 0.02, "output_router_logits": False,
          "initializer_range": 0.02, "attention_dropout": 0.0, "use_cache": True,
          "bos_token_id": 1, "eos_token_id": 2,
          "torch_dtype": "bfloat16" if dtype == "BF16" else "float32",
          "transformers_version": "4.36.0"}
    g = np.random.default_rng(seed)
    shapes = ref_torch.param_shapes(ref_config(hf, 1, 1))
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(shapes):
        s = shapes[name]
        a = ((1 + 0.1 * g.standard_normal(s)) if len(s) == 1 else std * g.standard_normal(s))
        b = (to_bf16(a) if dtype == "BF16" else a.astype("<f4")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(s), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return hf


def load_hf(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf = json.load(f)
    arrays = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    want = ref_torch.param_shapes(ref_config(hf, 1, 1))
    bad = [f"missing {n}" for n in want if n not in arrays]
    bad += [f"unexpected {n}" for n in arrays if n not in want]
    bad += [f"{n}: shape {list(arrays[n].shape)} != {list(want[n])}" for n in want
            if n in arrays and tuple(arrays[n].shape) != tuple(want[n])]
    if bad:
        raise ValueError(f"{hf_dir}: tensors do not match HF Mixtral names/shapes: {bad[:6]}")
    return hf, {n: torch.tensor(arrays[n]) for n in want}


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().split("\n")[2])
        return 2
    bin_ = os.path.abspath(argv[1])
    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="hf_eval_torch.")
    rows, fails = [], []

    def compare(label, hf_dir, hf, W, tokens, seq_len):
        """engine eval vs torch on one folder and window; returns the reference loss."""
        e = engine_eval(bin_, hf_dir, data, seq_len)
        T = e["seq_len"]
        t0 = time.time()
        ref, n_win, margin = torch_eval(hf, W, tokens, T)
        rel = abs(e["loss"] - ref) / abs(ref)
        rows.append(rel)
        tag = f"{label}, seq_len {T}" + (" (engine default)" if seq_len is None else "")
        print(f"hf_eval_torch: {tag}: {n_win} windows, engine {e['loss']!r} ({e['precision']}), "
              f"torch float64 {ref!r}: relative difference {rel:.2e} (smallest top-k score gap "
              f"{margin:.1e}; torch {time.time() - t0:.1f} s)")
        if e["windows"] != n_win or e["tokens"] != n_win * T:
            fails.append(f"{tag}: engine scored {e['windows']} windows / {e['tokens']} tokens, "
                         f"want {n_win} / {n_win * T}")
        if not rel <= TOL:
            fails.append(f"{tag}: relative difference {rel:.2e} > {TOL:g}")
        return ref

    try:
        run_dir, hf_dir, data = (os.path.join(tmp, x) for x in ("run", "hf", "f.txt"))
        with open(TEXT, "rb") as f, open(data, "wb") as g:
            g.write(f.read(TEXT_BYTES))
        with open(data, "rb") as f:
            tokens = np.frombuffer(f.read(), dtype=np.uint8).astype(np.int64)

        # 1. a model trained by swiftmoe, exported by swiftmoe, read here independently
        run([bin_, "train", "--set", "model.dim=32", "--set", "model.n_layers=2",
             "--set", "moe.expert_dim=64", "--set", "training.steps=30", "--set", "training.warmup_steps=2",
             "--set", "training.eval_windows=8", "--set", "metrics.progress=off", "--out", run_dir],
            "swiftmoe train")
        run([bin_, "export", run_dir, "--hf", hf_dir], "swiftmoe export")
        hf, W = load_hf(hf_dir)
        for sl in (None, 32):
            compare("trained + exported (F32)", hf_dir, hf, W, tokens, sl)

        # 2. HF folders written here (not by swiftmoe), F32 and BF16: the engine's reader
        #    against another writer, on weights where every part of the model matters.
        for dtype in ("F32", "BF16"):
            d = os.path.join(tmp, "foreign_" + dtype)
            write_foreign_hf(d, dtype)
            hf2, W2 = load_hf(d)
            ref = compare(f"foreign HF folder ({dtype}, random std 0.3)", d, hf2, W2, tokens, 32)

        # 3. the check can fail: references with plausible mapping bugs must land far outside
        #    the tolerance from the correct reference on the last folder (the engine's default RoPE base 1e4 used instead
        #    of the config's 1e6; HF's w1 (gate) and w3 (up) exchanged).
        swapped = {n: W2[n.replace(".w1.", ".w3.")] if ".w1." in n else
                   W2[n.replace(".w3.", ".w1.")] if ".w3." in n else t for n, t in W2.items()}
        for what, hf3, W3 in (("rope_theta 1e4 instead of 1e6", dict(hf2, rope_theta=1e4), W2),
                              ("w1 and w3 exchanged", hf2, swapped)):
            ref_bad, _, _ = torch_eval(hf3, W3, tokens, 32)
            rel_bad = abs(ref_bad - ref) / abs(ref)
            print(f"hf_eval_torch: sensitivity: a reference with {what} differs by {rel_bad:.2e} "
                  f"(must exceed {TOL:g})")
            if not rel_bad > TOL:
                fails.append(f"the comparison cannot tell {what} apart ({rel_bad:.2e})")

        print(f"hf_eval_torch: worst relative difference {max(rows):.2e} (tolerance {TOL:g}) over "
              f"{len(rows)} comparisons; {time.time() - t_start:.1f} s")
    except (RuntimeError, OSError, ValueError, KeyError, AssertionError) as ex:
        fails.append(str(ex))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in fails:
        print("hf_eval_torch: FAIL:", f)
    print("hf_eval_torch: " + ("FAIL" if fails else "PASS"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
