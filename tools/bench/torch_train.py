#!/usr/bin/python3
"""PyTorch eager CPU baseline for swiftmoe's training-speed benchmark.

Trains a Mixtral-architecture model (/work/shared/MIXTRAL.md) the way HF transformers does it:
MixtralSparseMoeBlock's loop over experts (torch.where on the one-hot mask, index the tokens, run
the expert MLP, index_add_ the weighted outputs), eager attention with repeat_kv, float32,
torch.optim.AdamW, linear warmup + cosine lr, clip_grad_norm_, on random byte windows of a corpus.
Loss = ce + 0.01 * aux + 0.001 * z (per-layer aux / z-loss averaged over layers), like the engine.

    /usr/bin/python3 tools/bench/torch_train.py --steps 50 --threads 8 --json out.json

Threads: --threads sets torch.set_num_threads() and OMP_NUM_THREADS (unless already set; both
size torch's OpenMP pool).  Debian's torch does its matmuls in OpenBLAS's pthread build, which has
its own pool: --blas-threads (default $OPENBLAS_NUM_THREADS, else 1) sets OPENBLAS_NUM_THREADS
before torch is imported.  The default is 1 because the two pools oversubscribe the cores: on a
2-core box, --threads 2 ran at ~2.4k tok/s with 2 OpenBLAS threads and ~8k tok/s with 1.  On a
many-core machine, also try --blas-threads = --threads and report the faster run as the baseline.
Torch's OpenMP threads spin-wait between ops, so when other processes compete for the cores a
multi-threaded run can collapse (seen: 2 threads at 1-9k tok/s on a shared 2-core box, 1 thread
steady at ~7-8k); benchmark on a quiet machine, or try OMP_WAIT_POLICY=PASSIVE.
Run the engine with the same --threads.  Throughput = batch * seq_len * measured steps / their
summed wall time, over all steps after the first 3 (which warm up allocators and thread pools).
"""
import argparse, json, math, os, statistics, time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
for name, default in [("dim", 128), ("n-layers", 4), ("n-heads", 4), ("n-kv-heads", 2),
                      ("seq-len", 128), ("vocab-size", 256), ("num-experts", 8), ("top-k", 2),
                      ("expert-dim", 256), ("batch", 16), ("steps", 50), ("threads", 1),
                      ("warmup-steps", 10), ("seed", 1234)]:
    ap.add_argument("--" + name, type=int, default=default)
for name, default in [("lr", 1e-3), ("min-lr-ratio", 0.1), ("beta1", 0.9), ("beta2", 0.95),
                      ("eps", 1e-8), ("weight-decay", 0.1), ("grad-clip", 1.0),
                      ("rope-theta", 1e6), ("rms-norm-eps", 1e-5), ("aux-loss-coef", 0.01),
                      ("z-loss-coef", 0.001)]:
    ap.add_argument("--" + name, type=float, default=default)
ap.add_argument("--data", default="/usr/share/games/fortunes", help="folder of text files")
ap.add_argument("--json", help="write a result summary here")
ap.add_argument("--blas-threads", type=int, help="OpenBLAS threads (default: $OPENBLAS_NUM_THREADS, else 1)")
args = ap.parse_args()
if args.blas_threads is None:
    args.blas_threads = int(os.environ.get("OPENBLAS_NUM_THREADS", 1))
os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

import numpy as np  # noqa: E402  (after the thread environment is set)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.H, self.Hkv, self.d = a.n_heads, a.n_kv_heads, a.dim // a.n_heads
        self.q_proj = nn.Linear(a.dim, self.H * self.d, bias=False)
        self.k_proj = nn.Linear(a.dim, self.Hkv * self.d, bias=False)
        self.v_proj = nn.Linear(a.dim, self.Hkv * self.d, bias=False)
        self.o_proj = nn.Linear(self.H * self.d, a.dim, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        g = self.H // self.Hkv   # HF repeat_kv
        k = k[:, :, None].expand(B, self.Hkv, g, T, self.d).reshape(B, self.H, T, self.d)
        v = v[:, :, None].expand(B, self.Hkv, g, T, self.d).reshape(B, self.H, T, self.d)
        s = q @ k.transpose(2, 3) / math.sqrt(self.d) + mask
        att = torch.softmax(s, -1, dtype=torch.float32).to(q.dtype) @ v
        return self.o_proj(att.transpose(1, 2).reshape(B, T, self.H * self.d))


class Expert(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.w1 = nn.Linear(a.dim, a.expert_dim, bias=False)
        self.w2 = nn.Linear(a.expert_dim, a.dim, bias=False)
        self.w3 = nn.Linear(a.dim, a.expert_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):
    """HF MixtralSparseMoeBlock.forward, plus the per-layer aux and z losses."""

    def __init__(self, a):
        super().__init__()
        self.E, self.K = a.num_experts, a.top_k
        self.gate = nn.Linear(a.dim, self.E, bias=False)
        self.experts = nn.ModuleList(Expert(a) for _ in range(self.E))

    def forward(self, x):
        B, T, D = x.shape
        x = x.view(-1, D)
        router_logits = self.gate(x)
        probs = F.softmax(router_logits, dim=1, dtype=torch.float)
        w, sel = torch.topk(probs, self.K, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(sel, num_classes=self.E).permute(2, 1, 0)   # (E, K, N)
        for e in range(self.E):
            idx, top_x = torch.where(mask[e])
            y = self.experts[e](x[top_x]) * w[top_x, idx, None]
            out.index_add_(0, top_x, y.to(x.dtype))
        f = mask.permute(2, 1, 0).float().mean(0)   # (K, E) fraction of k-th choices; no gradient
        aux = self.E * (f * probs.mean(0)[None]).sum()
        z = torch.logsumexp(router_logits, -1).pow(2).mean()
        return out.view(B, T, D), aux, z


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.dim, a.rms_norm_eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.dim, a.rms_norm_eps)
        self.block_sparse_moe = SparseMoeBlock(a)

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        m, aux, z = self.block_sparse_moe(self.post_attention_layernorm(h))
        return h + m, aux, z


class Mixtral(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.n_layers))
        self.norm = RMSNorm(a.dim, a.rms_norm_eps)
        self.lm_head = nn.Linear(a.dim, a.vocab_size, bias=False)
        for mod in self.modules():   # HF _init_weights, initializer_range 0.02
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
        d = a.dim // a.n_heads
        inv_freq = 1.0 / a.rope_theta ** (torch.arange(0, d, 2).float() / d)
        ang = torch.arange(a.seq_len).float()[:, None] * inv_freq[None]
        emb = torch.cat((ang, ang), -1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        causal = torch.full((a.seq_len, a.seq_len), float("-inf")).triu(1)
        self.register_buffer("mask", causal, persistent=False)

    def forward(self, inp, tgt):
        h, auxs, zs = self.embed_tokens(inp), [], []
        for layer in self.layers:
            h, aux, z = layer(h, self.cos, self.sin, self.mask)
            auxs.append(aux)
            zs.append(z)
        logits = self.lm_head(self.norm(h)).float()
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.reshape(-1))
        aux, z = torch.stack(auxs).mean(), torch.stack(zs).mean()
        return ce + self.a.aux_loss_coef * aux + self.a.z_loss_coef * z, ce


def load_corpus(path):
    names = sorted(n for n in os.listdir(path) if not n.endswith((".dat", ".u8")))
    parts = [open(os.path.join(path, n), "rb").read() for n in names
             if os.path.isfile(os.path.join(path, n)) and not os.path.islink(os.path.join(path, n))]
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def lr_at(step, a):   # step counts from 0; linear warmup, then cosine down to min_lr_ratio * lr
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    t = (step - a.warmup_steps) / max(1, a.steps - a.warmup_steps)
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def blas_summary():
    cfg = torch.__config__.show()
    info = next((p.split("=", 1)[1] for p in cfg.replace(",", "\n").split() if p.startswith("BLAS_INFO=")), "?")
    try:   # what the process actually loaded (Debian's torch says "generic" and uses libblas.so.3)
        libs = sorted({ln.split()[-1].rsplit("/", 1)[-1] for ln in open("/proc/self/maps")
                       if any(s in ln.lower() for s in ("blas", "mkl_", "libmkl"))})
    except OSError:
        libs = []
    kind = "MKL" if any("mkl" in l for l in libs) or "USE_MKL=ON" in cfg else \
           "OpenBLAS" if any("openblas" in l for l in libs) else info
    return f"{kind} (BLAS_INFO={info}; loaded: {', '.join(libs) or 'none found'})"


def main(a):
    assert a.vocab_size >= 256, "byte-level data needs --vocab-size >= 256"
    assert a.dim % a.n_heads == 0 and a.n_heads % a.n_kv_heads == 0 and a.top_k <= a.num_experts
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    data = load_corpus(a.data)
    assert data.size > a.seq_len + 1, f"corpus {a.data} too small"
    model = Mixtral(a)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps,
                            weight_decay=a.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    tok_per_step = a.batch * a.seq_len
    print(f"torch {torch.__version__}, {a.threads} threads ({a.blas_threads} BLAS), {blas_summary()}; {n_params / 1e6:.2f}M params, "
          f"corpus {data.size} bytes, {tok_per_step} tokens/step", flush=True)
    times, loss_v = [], float("nan")
    for step in range(a.steps):
        t0 = time.perf_counter()
        starts = rng.integers(0, data.size - a.seq_len - 1, a.batch)
        win = torch.from_numpy(np.stack([data[s:s + a.seq_len + 1] for s in starts]).astype(np.int64))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        loss, ce = model(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        loss_v = loss.item()
        times.append(time.perf_counter() - t0)
        if step % 10 == 0 or step == a.steps - 1:
            print(f"step {step:5d}  loss {loss_v:.4f}  ce {ce.item():.4f}  gnorm {gnorm.item():.3f}  "
                  f"lr {lr_at(step, a):.2e}  {times[-1] * 1e3:.1f} ms  "
                  f"{tok_per_step / times[-1]:.0f} tok/s", flush=True)
    measured = times[3:] if len(times) > 3 else times
    res = {"tokens_per_s": tok_per_step * len(measured) / sum(measured),
           "step_time_s": statistics.median(measured), "steps": a.steps,
           "measured_steps": len(measured), "final_loss": loss_v, "torch_version": torch.__version__,
           "threads": a.threads, "blas_threads": a.blas_threads,
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "blas": blas_summary(), "params": n_params,
           "config": {k: v for k, v in vars(a).items() if k != "json"}}
    print(f"summary: {res['tokens_per_s']:.0f} tokens/s over {len(measured)} steps, median step "
          f"{res['step_time_s'] * 1e3:.1f} ms, final loss {loss_v:.4f}, torch {torch.__version__}, "
          f"{a.threads} threads ({a.blas_threads} BLAS), {res['blas']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(args)
