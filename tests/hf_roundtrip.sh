#!/usr/bin/env bash
# HF Mixtral import/export round trip, which must be EXACT in f32:
#   train a tiny run -> `export --hf` (config.json + model.safetensors with HF
#   names) -> `eval --init-hf` and `train --init-hf` give bit-identical losses
#   to the run's own weights; config.json overrides are warned about; a bf16
#   export is close (not exact, by design); and the error cases exit with the
#   documented codes and messages.
# usage: hf_roundtrip.sh path/to/swiftmoe
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok() { pass=$((pass + 1)); echo "ok:   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# run_capture VAR_OUT VAR_RC CMD...: runs CMD with stdout+stderr captured,
# never aborting the script (set -e) on a non-zero exit.
run_capture() {
  local -n _out=$1 _rc=$2
  shift 2
  _rc=0
  _out=$("$@" 2>&1) || _rc=$?
}

# expect CODE SUBSTRING -- ARGS...: swiftmoe ARGS exits CODE and prints SUBSTRING.
expect() {
  local code=$1 want=$2
  shift 3
  local out rc
  run_capture out rc "$bin" "$@"
  if [ "$rc" -eq "$code" ] && grep -qF -- "$want" <<<"$out"; then
    ok "swiftmoe $* -> exit $rc, says '$want'"
  else
    bad "swiftmoe $* -> exit $rc (want $code), output:"
    echo "$out" | head -5 | sed 's/^/    /'
    echo "    (wanted to see: $want)"
  fi
}

# The "loss" member of eval's JSON line, as printed (string, not re-parsed).
json_loss() { sed -n 's/.*"loss":\([^,}]*\).*/\1/p' <<<"$1" | head -1; }

args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=64
      --set training.warmup_steps=0 --set training.eval_windows=8 --set metrics.progress=off)
data=$tmp/f.txt
head -c 30000 /usr/share/games/fortunes/computers >"$data"

# ------------------------------------------------------------ train + export
"$bin" train "${args[@]}" --set training.steps=20 --set training.warmup_steps=2 \
  --out "$tmp/run" >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; echo "FAIL: training the run"; exit 1; }
if [ -f "$tmp/run/model.safetensors" ]; then ok "the run folder holds model.safetensors"
else bad "the run folder has no model.safetensors"; fi

run_capture out rc "$bin" export "$tmp/run" --hf "$tmp/hf"
if [ "$rc" -eq 0 ] && [ -f "$tmp/hf/config.json" ] && [ -f "$tmp/hf/model.safetensors" ]; then
  ok "export --hf wrote config.json and model.safetensors"
else
  bad "export --hf -> exit $rc: $out"
  echo "$pass passed, $((fail + 1)) failed (cannot continue without the export)"
  exit 1
fi

# config.json and the safetensors header, read with python's json + struct.
# Each problem is one line "FAIL: ..."; the last line is "checked N".
check_export() {  # HF_DIR RUN_DIR DTYPE(F32|BF16) TORCH_DTYPE
  python3 - "$@" <<'PY'
import configparser, json, struct, sys
hf, run, dtype, torch_dtype = sys.argv[1:5]
problems, checked = [], 0
def want(cond, msg):
    global checked
    checked += 1
    if not cond:
        problems.append(msg)
cfg = json.load(open(hf + "/config.json"))
ini = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
ini.read(run + "/config.ini")
get = lambda key: ini.get(*key.split(".")).strip()
want(cfg.get("model_type") == "mixtral", f"model_type {cfg.get('model_type')!r}")
want(cfg.get("architectures") == ["MixtralForCausalLM"], f"architectures {cfg.get('architectures')!r}")
want(cfg.get("torch_dtype") == torch_dtype, f"torch_dtype {cfg.get('torch_dtype')!r}, want {torch_dtype}")
want(cfg.get("hidden_act") == "silu", f"hidden_act {cfg.get('hidden_act')!r}")
ints = {"vocab_size": "model.vocab_size", "hidden_size": "model.dim",
        "num_hidden_layers": "model.n_layers", "num_attention_heads": "model.n_heads",
        "num_key_value_heads": "model.n_kv_heads", "num_local_experts": "moe.num_experts",
        "num_experts_per_tok": "moe.top_k", "intermediate_size": "moe.expert_dim"}
for f, k in ints.items():
    want(cfg.get(f) == int(get(k)), f"config.json {f} = {cfg.get(f)!r}, config.ini {k} = {get(k)}")
for f, k in {"rope_theta": "model.rope_theta", "rms_norm_eps": "model.rms_norm_eps"}.items():
    want(cfg.get(f) == float(get(k)), f"config.json {f} = {cfg.get(f)!r}, config.ini {k} = {get(k)}")
tied = get("model.tie_word_embeddings").lower() in ("true", "1", "yes", "on")
want(cfg.get("tie_word_embeddings") == tied, f"tie_word_embeddings {cfg.get('tie_word_embeddings')!r}")
want(cfg.get("head_dim") == cfg["hidden_size"] // cfg["num_attention_heads"], "head_dim")

raw = open(hf + "/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__", None)
want(isinstance(meta, dict) and meta.get("format") == "pt", f"__metadata__ {meta!r}: want format=pt")
D, L, E, F, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_local_experts"], \
    cfg["intermediate_size"], cfg["vocab_size"]
H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
d = D // H
shapes = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D]}
if not tied:
    shapes["lm_head.weight"] = [V, D]
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": [D], p + "post_attention_layernorm.weight": [D],
                   p + "self_attn.q_proj.weight": [H * d, D], p + "self_attn.k_proj.weight": [Hkv * d, D],
                   p + "self_attn.v_proj.weight": [Hkv * d, D], p + "self_attn.o_proj.weight": [D, H * d],
                   p + "block_sparse_moe.gate.weight": [E, D]})
    for e in range(E):
        q = p + f"block_sparse_moe.experts.{e}."
        shapes.update({q + "w1.weight": [F, D], q + "w3.weight": [F, D], q + "w2.weight": [D, F]})
want(set(hdr) == set(shapes), f"tensor names: missing {sorted(set(shapes) - set(hdr))[:5]}, "
     f"unexpected {sorted(set(hdr) - set(shapes))[:5]}")
size = {"F32": 4, "BF16": 2}[dtype]
end = 0
for name, t in hdr.items():
    if name not in shapes:
        continue
    want(t["dtype"] == dtype, f"{name}: dtype {t['dtype']}, want {dtype}")
    want(t["shape"] == shapes[name], f"{name}: shape {t['shape']}, want {shapes[name]}")
    b, e_ = t["data_offsets"]
    count = 1
    for s in t["shape"]:
        count *= s
    want(e_ - b == count * size, f"{name}: data_offsets {t['data_offsets']} for {count} x {size} bytes")
    end = max(end, e_)
want(8 + n + end == len(raw), f"file is {len(raw)} bytes, header describes {8 + n + end}")
for p in problems:
    print("FAIL:", p)
print("checked", checked)
PY
}

out=$(check_export "$tmp/hf" "$tmp/run" F32 float32 2>&1) || true
if grep -q '^FAIL' <<<"$out" || ! grep -q '^checked' <<<"$out"; then bad "f32 export contents:"; grep -v '^checked' <<<"$out" | sed 's/^/    /'
else ok "f32 export: config.json matches config.ini, safetensors names/shapes/F32/format=pt ($(tail -1 <<<"$out"))"; fi

# ---------------------------------------------------- eval: run vs HF, exact
a="" b="" rca=0 rcb=0 f32_loss=""
for sl in "" 32; do
  extra=()
  if [ -n "$sl" ]; then extra=(--seq-len "$sl"); fi
  run_capture a rca "$bin" eval "$tmp/run" --data "$data" "${extra[@]}"
  run_capture b rcb "$bin" eval --init-hf "$tmp/hf" --data "$data" "${extra[@]}"
  la=$(json_loss "$a") lb=$(json_loss "$b")
  if [ "$rca" -eq 0 ] && [ "$rcb" -eq 0 ] && [ -n "$la" ] && [ "$la" = "$lb" ]; then
    ok "eval RUN and eval --init-hf HF${sl:+ (--seq-len $sl)}: identical loss $la"
  else
    bad "eval RUN (exit $rca, loss '$la') != eval --init-hf HF (exit $rcb, loss '$lb')${sl:+ with --seq-len $sl}"
    echo "$a" "$b" | tail -4 | sed 's/^/    /'
  fi
  if [ -z "$sl" ]; then f32_loss=$la; fi
done

# ------------------------------- train --init-hf: step-0 val = run's final val
run_capture out rc "$bin" train "${args[@]}" --set training.steps=1 --init-hf "$tmp/hf" --out "$tmp/run2"
if [ "$rc" -ne 0 ]; then
  bad "train --init-hf -> exit $rc: $(tail -2 <<<"$out")"
else
  v=$(python3 -c '
import json, sys
a, b = (json.load(open(p + "/summary.json")) for p in sys.argv[1:3])
print(repr(a["final_val_loss"]), repr(b["first_val_loss"]), a["final_val_loss"] == b["first_val_loss"])' \
    "$tmp/run" "$tmp/run2" 2>&1) || true
  read -r final first same <<<"$v"
  if [ "$same" = True ]; then ok "train --init-hf: step-0 val loss $first = the run's final val loss"
  else bad "train --init-hf: step-0 val loss $first != the run's final val loss $final"; fi
  if grep -q "overrides" <<<"$out"; then bad "train --init-hf with matching --set printed an override warning:"
    grep -A3 overrides <<<"$out" | sed 's/^/    /'
  else ok "train --init-hf with a matching config prints no override warning"; fi
fi

# config.json sets [model]/[moe] over the defaults: consistent shape, trains.
run_capture out rc "$bin" train --set training.steps=1 --set training.warmup_steps=0 \
  --set training.eval_windows=8 --set metrics.progress=off --init-hf "$tmp/hf" --out "$tmp/run3"
if [ "$rc" -eq 0 ] && grep -q "overrides" <<<"$out" && grep -q "model.dim: 128 -> 32" <<<"$out" &&
   grep -q "model.n_layers: 4 -> 2" <<<"$out" && grep -q "moe.expert_dim: 256 -> 64" <<<"$out" &&
   grep -q "^dim = 32" "$tmp/run3/config.ini"; then
  ok "train --init-hf over the defaults: warns model.dim, model.n_layers, moe.expert_dim; run uses them"
else
  bad "train --init-hf over the defaults -> exit $rc; want a warning naming model.dim: 128 -> 32 etc:"
  head -6 <<<"$out" | sed 's/^/    /'
fi

# config.json edited to another hidden_size (head_dim kept consistent, so the
# config itself is valid): warning naming model.dim, then the tensors' shape fails.
mkdir "$tmp/hf_dim"
cp "$tmp/hf/model.safetensors" "$tmp/hf_dim/"
python3 - "$tmp/hf/config.json" "$tmp/hf_dim/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["hidden_size"] *= 2
c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
run_capture out rc "$bin" train "${args[@]}" --set training.steps=1 --init-hf "$tmp/hf_dim" --out "$tmp/run4"
if [ "$rc" -eq 1 ] && grep -q "warning" <<<"$out" && grep -q "model.dim: 32 -> 64" <<<"$out" &&
   grep -q "shape" <<<"$out" && grep -q "model.embed_tokens.weight\|\[256, 32\]" <<<"$out"; then
  ok "train --init-hf with hidden_size edited: warns model.dim: 32 -> 64, fails on shape, exit 1"
else
  bad "train --init-hf with hidden_size edited -> exit $rc (want 1, a model.dim warning, a shape error):"
  head -6 <<<"$out" | sed 's/^/    /'
fi
# the same folder through eval: a shape error too
expect 1 "shape" -- eval --init-hf "$tmp/hf_dim" --data "$data"

# ----------------------------------------------------------------- bf16
run_capture out rc "$bin" export "$tmp/run" --hf "$tmp/hf16" --dtype bf16
if [ "$rc" -eq 0 ]; then
  out=$(check_export "$tmp/hf16" "$tmp/run" BF16 bfloat16 2>&1) || true
  if grep -q '^FAIL' <<<"$out" || ! grep -q '^checked' <<<"$out"; then bad "bf16 export contents:"; grep -v '^checked' <<<"$out" | sed 's/^/    /'
  else ok "bf16 export: BF16 tensors, torch_dtype bfloat16 ($(tail -1 <<<"$out"))"; fi
  run_capture b rcb "$bin" eval --init-hf "$tmp/hf16" --data "$data"
  l16=$(json_loss "$b")
  if [ "$rcb" -eq 0 ] && [ -n "$l16" ] && python3 -c '
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
r = abs(a - b) / abs(a)
print(f"    bf16 loss {b!r} vs f32 {a!r}: relative difference {r:.2e}")
sys.exit(0 if 0 < r <= 1e-2 else 1)' "$f32_loss" "$l16"; then
    ok "eval of the bf16 export is within 1e-2 relative of f32 (and not identical: the rounding happened)"
  else
    bad "eval of the bf16 export -> exit $rcb, loss '$l16' vs f32 '$f32_loss' (want 0 < rel diff <= 1e-2)"
  fi
else
  bad "export --dtype bf16 -> exit $rc: $out"
fi
expect 2 "--dtype f16" -- export "$tmp/run" --hf "$tmp/hfx" --dtype f16

# ------------------------------------------------------------ error cases
expect 1 "$tmp/no_such_run" -- export "$tmp/no_such_run" --hf "$tmp/hf_missing"
if [ ! -e "$tmp/hf_missing" ]; then ok "a failed export creates no output folder"
else bad "a failed export (missing run) left $tmp/hf_missing behind"; fi
expect 2 "--hf" -- export "$tmp/run"
expect 2 "--data" -- eval "$tmp/run"
expect 2 "either RUN_DIR or --init-hf" -- eval "$tmp/run" --init-hf "$tmp/hf" --data "$data"
mkdir "$tmp/neither"
expect 1 "neither a run folder" -- eval "$tmp/neither" --data "$data"
expect 1 "$tmp/no_such_data.txt" -- eval "$tmp/run" --data "$tmp/no_such_data.txt"
mkdir "$tmp/hf_trunc"
cp "$tmp/hf/config.json" "$tmp/hf_trunc/"
sz=$(stat -c %s "$tmp/hf/model.safetensors")
head -c $((sz / 2)) "$tmp/hf/model.safetensors" >"$tmp/hf_trunc/model.safetensors"
expect 1 "truncated" -- eval --init-hf "$tmp/hf_trunc" --data "$data"
expect 1 "truncated" -- train "${args[@]}" --set training.steps=1 --init-hf "$tmp/hf_trunc" --out "$tmp/run5"
mkdir "$tmp/hf_nost"
cp "$tmp/hf/config.json" "$tmp/hf_nost/"
expect 1 "neither model.safetensors nor" -- eval --init-hf "$tmp/hf_nost" --data "$data"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
