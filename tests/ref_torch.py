#!/usr/bin/python3
"""Independent PyTorch (float64, autograd) reference for the engine's forward and backward.

    /usr/bin/python3 tests/ref_torch.py PREFIX      check PREFIX.json + PREFIX.bin (exit 0 ok, 1 not)
    /usr/bin/python3 tests/ref_torch.py --self-test prove the checker passes good dumps, fails bad ones

The model is /work/shared/MIXTRAL.md; loss = ce + aux_loss_coef * aux + z_loss_coef * z where aux and
z are per-layer losses averaged over layers (aux: f from the top-k selection, a constant; P the mean
router probability, differentiated). With expert_bias the bias is added to p for selection only.

Tolerance: per tensor err = max|a - b| / max(max|b|, 1e-12) must be <= 1e-8 (a = engine, b = this
reference).  Both sides compute in float64, so honest differences come only from summation order:
~1e-16 * sqrt(terms) * conditioning, i.e. 1e-14..1e-12 at test sizes.  1e-8 leaves four orders of
headroom for that, while any real bug (a missing term, wrong scale, wrong head/expert mapping, a
flipped top-k choice) shows up at 1e-4 or worse.  Scaling by the tensor's max keeps near-zero
entries (e.g. cancellations in a gradient) from producing spurious relative blow-ups.
"""
import argparse, json, os, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-8
torch.set_default_dtype(torch.float64)


def param_shapes(c):
    """HF Mixtral parameter names -> shapes, in the canonical order."""
    D, d = c["dim"], c["dim"] // c["n_heads"]
    H, Hkv, E, Fd, V = c["n_heads"], c["n_kv_heads"], c["num_experts"], c["expert_dim"], c["vocab_size"]
    s = {"model.embed_tokens.weight": (V, D)}
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        s[p + "input_layernorm.weight"] = (D,)
        s[p + "self_attn.q_proj.weight"] = (H * d, D)
        s[p + "self_attn.k_proj.weight"] = (Hkv * d, D)
        s[p + "self_attn.v_proj.weight"] = (Hkv * d, D)
        s[p + "self_attn.o_proj.weight"] = (D, H * d)
        s[p + "post_attention_layernorm.weight"] = (D,)
        s[p + "block_sparse_moe.gate.weight"] = (E, D)
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            s[q + "w1.weight"], s[q + "w3.weight"], s[q + "w2.weight"] = (Fd, D), (Fd, D), (D, Fd)
    s["model.norm.weight"] = (D,)
    if not c["tie_word_embeddings"]:
        s["lm_head.weight"] = (V, D)
    return s


def bias_name(l):
    return f"model.layers.{l}.block_sparse_moe.expert_bias"


def write_dump(prefix, config, tensors, loss):
    """tensors: dict name -> array; written as little-endian float64, row-major."""
    meta, off = [], 0
    with open(prefix + ".bin", "wb") as fb:
        for name, a in tensors.items():
            a = np.ascontiguousarray(a, dtype="<f8")
            fb.write(a.tobytes())
            meta.append({"name": name, "shape": list(a.shape), "offset": off})
            off += a.nbytes
    with open(prefix + ".json", "w") as fj:
        json.dump({"config": config, "dtype": "F64", "tensors": meta, "loss": loss}, fj, indent=1)


def read_dump(prefix):
    with open(prefix + ".json") as fj:
        js = json.load(fj)
    if js.get("dtype", "F64") != "F64":
        raise ValueError(f"dtype {js['dtype']!r}, expected F64")
    raw = np.fromfile(prefix + ".bin", dtype="<f8")
    arrays = {}
    for t in js["tensors"]:
        n, o = int(np.prod(t["shape"], dtype=np.int64)), t["offset"]
        if o % 8 or o // 8 + n > raw.size:
            raise ValueError(f"tensor {t['name']}: offset {o} + {n} doubles exceeds {prefix}.bin")
        arrays[t["name"]] = raw[o // 8: o // 8 + n].reshape(t["shape"])
    return js["config"], arrays, js["loss"]


def rmsnorm(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def moe_loop(b, idx, w, W, pre, E):
    """HF MixtralSparseMoeBlock style: per expert, gather its tokens, run it, index_add."""
    out = torch.zeros_like(b)
    for e in range(E):
        tok, slot = torch.where(idx == e)
        if tok.numel() == 0:
            continue
        q, x = pre + f"experts.{e}.", b[tok]
        y = (F.silu(x @ W[q + "w1.weight"].T) * (x @ W[q + "w3.weight"].T)) @ W[q + "w2.weight"].T
        out = out.index_add(0, tok, y * w[tok, slot, None])
    return out


def moe_dense(b, idx, w, W, pre, E):
    """Alternative formulation (used to generate self-test dumps): every expert on every token,
    combined through a (N, E) gate matrix that is zero off the selection."""
    G = torch.zeros(b.shape[0], E).scatter(1, idx, w)
    out = 0
    for e in range(E):
        q = pre + f"experts.{e}."
        y = (F.silu(b @ W[q + "w1.weight"].T) * (b @ W[q + "w3.weight"].T)) @ W[q + "w2.weight"].T
        out = out + G[:, e:e + 1] * y
    return out


def forward(c, W, tokens, biases, moe=moe_loop):
    B, T, D, H, Hkv, L = c["batch"], c["seq_len"], c["dim"], c["n_heads"], c["n_kv_heads"], c["n_layers"]
    E, K, V, eps, d = c["num_experts"], c["top_k"], c["vocab_size"], c["rms_norm_eps"], D // H
    inp, tgt = tokens[:, :T], tokens[:, 1:]
    inv_freq = 1.0 / c["rope_theta"] ** (torch.arange(0, d, 2) / d)       # j = 0..d/2-1: theta^(2j/d)
    ang = torch.arange(T)[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()     # (T, d)
    rope = lambda x: x * cos + torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1) * sin
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    h = W["model.embed_tokens.weight"][inp]                                # (B, T, D)
    aux, z, margin = [], [], float("inf")
    for l in range(L):
        p_ = f"model.layers.{l}."
        a = rmsnorm(h, W[p_ + "input_layernorm.weight"], eps)
        q = (a @ W[p_ + "self_attn.q_proj.weight"].T).view(B, T, H, d).transpose(1, 2)
        k = (a @ W[p_ + "self_attn.k_proj.weight"].T).view(B, T, Hkv, d).transpose(1, 2)
        v = (a @ W[p_ + "self_attn.v_proj.weight"].T).view(B, T, Hkv, d).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)  # head i -> kv i//g
        s = (q @ k.transpose(-1, -2) / d ** 0.5).masked_fill(~causal, float("-inf"))
        att = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, H * d)
        h = h + att @ W[p_ + "self_attn.o_proj.weight"].T
        bb = rmsnorm(h, W[p_ + "post_attention_layernorm.weight"], eps).reshape(B * T, D)
        rl = bb @ W[p_ + "block_sparse_moe.gate.weight"].T                     # (N, E)
        p = torch.softmax(rl, -1)
        score = p.detach() + (biases[l] if biases is not None else 0.0)
        sv, si = torch.sort(score, dim=-1, descending=True, stable=True)          # ties -> lower index
        idx = si[:, :K]
        if K < E:
            margin = min(margin, (sv[:, K - 1] - sv[:, K]).min().item())
        w = p.gather(1, idx)
        w = w / w.sum(-1, keepdim=True)
        h = h + moe(bb, idx, w, W, p_ + "block_sparse_moe.", E).view(B, T, D)
        f = F.one_hot(idx, E).to(torch.float64).mean(0)                       # (K, E), constant
        aux.append(E * (f * p.mean(0)[None, :]).sum())
        z.append((torch.logsumexp(rl, -1) ** 2).mean())
    x = rmsnorm(h, W["model.norm.weight"], eps)
    logits = x @ W["lm_head.weight" if "lm_head.weight" in W else "model.embed_tokens.weight"].T
    ce = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    aux, z = torch.stack(aux).mean(), torch.stack(z).mean()
    total = ce + c["aux_loss_coef"] * aux + c["z_loss_coef"] * z
    return logits, {"total": total, "ce": ce, "aux": aux, "z": z}, margin


def reference(c, arrays, moe=moe_loop):
    """Run forward + backward of `total`; returns (outputs dict of arrays, loss dict, top-k margin)."""
    W = {n: torch.tensor(arrays[n], requires_grad=True) for n in param_shapes(c)}
    tokens = torch.tensor(np.rint(arrays["tokens"])).long()
    biases = [torch.tensor(arrays[bias_name(l)]) for l in range(c["n_layers"])] \
        if c.get("expert_bias") else None
    logits, loss, margin = forward(c, W, tokens, biases, moe)
    loss["total"].backward()
    out = {"logits": logits.detach().numpy()}
    for n, t in W.items():   # an expert no token chose has no autograd grad: it is exactly zero
        out["grad." + n] = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
    return out, {k: v.item() for k, v in loss.items()}, margin


def check(prefix):
    c, arrays, loss = read_dump(prefix)
    shapes = param_shapes(c)
    need = dict(shapes, tokens=(c["batch"], c["seq_len"] + 1))
    need.update({"grad." + n: s for n, s in shapes.items()})
    need["logits"] = (c["batch"], c["seq_len"], c["vocab_size"])
    if c.get("expert_bias"):
        need.update({bias_name(l): (c["num_experts"],) for l in range(c["n_layers"])})
    bad = [f"missing {n}" for n in need if n not in arrays]
    bad += [f"shape {n}: {list(arrays[n].shape)} != {list(s)}" for n, s in need.items()
            if n in arrays and tuple(arrays[n].shape) != tuple(s)]
    for n in arrays:
        if n not in need:
            print(f"warning: {prefix}: ignoring unexpected tensor {n}")
    tok = arrays.get("tokens")
    if tok is not None and not (np.all(tok == np.rint(tok)) and tok.min() >= 0 and tok.max() < c["vocab_size"]):
        bad.append(f"tokens not integers in [0, {c['vocab_size']})")
    bad += [f"missing loss.{k}" for k in ("total", "ce", "aux", "z") if k not in loss]
    if bad:
        print(f"FAIL {prefix}: malformed dump\n  " + "\n  ".join(bad))
        return False
    ref, ref_loss, margin = reference(c, arrays)
    rows = []   # (err, name, max|a-b|, max|b|)
    for k in ("total", "ce", "aux", "z"):
        diff = abs(float(loss[k]) - ref_loss[k])
        rows.append((diff / max(abs(ref_loss[k]), 1e-12), "loss." + k, diff, abs(ref_loss[k])))
    for n, b in ref.items():
        a = arrays[n]
        diff, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
        err = diff / max(scale, 1e-12) if np.all(np.isfinite(a)) else float("inf")
        rows.append((err, n, diff, scale))
    rows.sort(key=lambda r: -r[0])
    fails = [r for r in rows if not r[0] <= TOL]
    print(f"ref_torch: {prefix}: {len(rows)} quantities, tolerance err <= {TOL:g} "
          f"(err = max|a-b| / max|ref|); smallest top-k score gap {margin:.3g}")
    for err, n, diff, scale in rows[:max(8, len(fails))]:
        print(f"  {'FAIL' if not err <= TOL else 'ok  '} err {err:.3e}  max|a-b| {diff:.3e}  "
              f"max|ref| {scale:.3e}  {n}")
    if fails:
        print(f"FAIL: {len(fails)} of {len(rows)} exceed tolerance: " + ", ".join(r[1] for r in fails))
        if margin < 1e-9:
            print("  note: a top-k score gap is below 1e-9; a tie may have been broken differently")
        return False
    print(f"PASS: worst err {rows[0][0]:.3e} ({rows[0][1]})")
    return True


def make_case(prefix, seed, tied, expert_bias):
    """Tiny random model; dump produced by the dense-MoE formulation of the same equations."""
    g = np.random.default_rng(seed)
    c = {"vocab_size": 37, "dim": 16, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "seq_len": 7,
         "batch": 3, "num_experts": 5, "top_k": 2, "expert_dim": 12, "rope_theta": 10000.0,
         "rms_norm_eps": 1e-5, "tie_word_embeddings": tied, "aux_loss_coef": 0.02,
         "z_loss_coef": 0.001, "expert_bias": expert_bias}
    arrays = {n: (1 + 0.1 * g.standard_normal(s)) if len(s) == 1 else 0.3 * g.standard_normal(s)
              for n, s in param_shapes(c).items()}
    arrays["tokens"] = g.integers(0, c["vocab_size"], (c["batch"], c["seq_len"] + 1)).astype(np.float64)
    if expert_bias:
        arrays.update({bias_name(l): 0.1 * g.standard_normal(c["num_experts"])
                       for l in range(c["n_layers"])})
    out, loss, _ = reference(c, arrays, moe=moe_dense)
    write_dump(prefix, c, {**arrays, **out}, loss)
    return c, {**arrays, **out}, loss


def self_test():
    results = []
    def expect(what, want, prefix):
        got = check(prefix)
        results.append((what, got == want))
        print(f"[self-test] {what}: expected {'pass' if want else 'FAIL'}, got "
              f"{'pass' if got else 'FAIL'} -> {'OK' if got == want else 'WRONG'}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (tied, eb) in enumerate([(False, False), (True, True)]):
            pre = os.path.join(tmp, f"case{i}")
            c, arrays, loss = make_case(pre, seed=i, tied=tied, expert_bias=eb)
            tag = f"case{i} (tied={tied}, expert_bias={eb})"
            expect(f"{tag} good dump", True, pre)
            if eb:   # the bias must actually change some selection, or that path is untested
                nb = {k: v for k, v in arrays.items() if not k.endswith("expert_bias")}
                c2 = dict(c, expert_bias=False)
                moved = np.max(np.abs(reference(c2, nb)[0]["logits"] - arrays["logits"]))
                results.append(("expert_bias changes selections", moved > 1e-6))
                print(f"[self-test] expert_bias changes logits by {moved:.3e} -> "
                      f"{'OK' if moved > 1e-6 else 'WRONG'}\n")
            gname = "grad.model.layers.1.block_sparse_moe.gate.weight"
            for name, where in [(gname, (2, 3)), ("logits", (1, 4, 5))]:
                bad = {k: v.copy() for k, v in arrays.items()}
                bad[name][where] += 1e-6 * np.max(np.abs(bad[name]))
                write_dump(pre, c, bad, loss)
                expect(f"{tag} {name}{list(where)} perturbed by 1e-6 relative", False, pre)
            write_dump(pre, c, arrays, dict(loss, aux=loss["aux"] * (1 + 1e-6)))
            expect(f"{tag} loss.aux perturbed", False, pre)
            write_dump(pre, c, {k: v for k, v in arrays.items() if k != gname}, loss)
            expect(f"{tag} missing {gname}", False, pre)
        # the process exit status, not just the return value
        write_dump(pre, c, arrays, loss)
        import subprocess
        rc = subprocess.run([sys.executable, __file__, pre], capture_output=True).returncode
        results.append(("exit status 0 on good dump", rc == 0))
        bad = dict(arrays, logits=arrays["logits"] + 1e-3)
        write_dump(pre, c, bad, loss)
        rc1 = subprocess.run([sys.executable, __file__, pre], capture_output=True).returncode
        results.append(("exit status 1 on bad dump", rc1 == 1))
        print(f"[self-test] exit status good dump {rc} (want 0), bad dump {rc1} (want 1)")
    wrong = [w for w, ok in results if not ok]
    print(f"[self-test] {len(results) - len(wrong)}/{len(results)} checks behaved as expected"
          + ("" if not wrong else "; WRONG: " + ", ".join(wrong)))
    return not wrong


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("prefix", nargs="?", help="dump prefix: reads PREFIX.json and PREFIX.bin")
    ap.add_argument("--self-test", action="store_true", help="check that the checker passes and fails")
    args = ap.parse_args(argv)
    if args.self_test:
        return 0 if self_test() else 1
    if not args.prefix:
        ap.error("PREFIX or --self-test required")
    try:
        return 0 if check(args.prefix) else 1
    except (OSError, ValueError, KeyError) as e:
        print(f"FAIL {args.prefix}: cannot read dump: {e!r}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
