#!/usr/bin/env bash
# `swiftmoe sample` and training.sample_every, end to end:
#  - 4-rank runs with and without sample_every: losses and final weights bit
#    for bit equal (sampling reads the training state, never writes it); the
#    samples are in metrics.jsonl, and the last one equals `swiftmoe sample`
#    on the saved weights with the same settings (the gathered experts are
#    the saved ones);
#  - the same seed gives the same text, another seed other text; greedy
#    (temperature 0) is the same whatever the seed and on the guard backend;
#    --ids prints ids;
#  - errors, one line each, exit 1 or 2: an empty prompt, a prompt and
#    --tokens longer than the context, a run folder without weights, a
#    negative temperature, an id outside the vocabulary, a text prompt for a
#    model that is not byte-level.
#  - from a checkpoint (read from every rank's store): `export --step latest`
#    = the final weights byte for byte, `sample --step`; a missing manifest
#    and a corrupted chunk refused naming rank, step and key, nothing written.
# usage: sample.sh path/to/swiftmoe path/to/store_tool
set -uo pipefail
bin=$1
tool=$2
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
keep_logs
args=(--set model.dim=64 --set moe.expert_dim=96 --set training.steps=30
      --set training.warmup_steps=4 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=10)

echo "training with and without samples ..."
mpi 4 "$bin" train "${args[@]}" --set training.sample_every=15 --out "$tmp/with" >"$tmp/with.log" 2>&1 \
  || bad "run with samples: $(tail -3 "$tmp/with.log")"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/without" >"$tmp/without.log" 2>&1 \
  || bad "run without samples: $(tail -3 "$tmp/without.log")"
python3 - "$tmp/with" "$tmp/without" <<'PY' && cmp -s "$tmp/with/model.safetensors" "$tmp/without/model.safetensors" \
  && ok "samples during training change nothing: losses and weights bit for bit" || bad "sampling changed the run"
import json, sys
a, b = ([json.loads(l) for l in open(d + "/metrics.jsonl")] for d in sys.argv[1:])
assert [x["loss"] for x in a] == [x["loss"] for x in b], "losses differ"
s = [x for x in a if "sample" in x]
assert [x["step"] for x in s] == [15, 30], s
assert all(len(x["sample"]) > 0 for x in s)
PY
grep -q "sample after step 30:" "$tmp/with.log" && ok "the sample is printed" || bad "no sample in the log"
"$bin" sample "$tmp/with" --tokens 64 --temperature 0.8 --top-k 40 --seed 1337 >"$tmp/cli" 2>/dev/null \
  || bad "sample from the run"
python3 - "$tmp/with/metrics.jsonl" "$tmp/cli" <<'PY' && ok "the last sample equals swiftmoe sample on the saved weights" || bad "training's sample differs from the CLI's"
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if '"sample"' in l][-1]["sample"]
cli = open(sys.argv[2], encoding="utf-8", errors="surrogateescape").read()
assert cli == "\n" + last + "\n", (repr(cli), repr(last))
PY

# --- from a checkpoint, no training process -------------------------------------------
"$bin" export "$tmp/with" --step latest --hf "$tmp/ck_hf" >/dev/null 2>"$tmp/err" \
  && "$bin" export "$tmp/with" --hf "$tmp/final_hf" >/dev/null 2>&1 \
  && cmp -s "$tmp/ck_hf/model.safetensors" "$tmp/final_hf/model.safetensors" \
  && ok "export --step latest (step 30, read from the 4 ranks' stores) = the final weights, byte for byte" \
  || bad "export from the checkpoint differs: $(cat "$tmp/err")"
"$bin" sample "$tmp/with" --step 30 --tokens 64 --temperature 0.8 --top-k 40 --seed 1337 >"$tmp/cli30" 2>/dev/null \
  && cmp -s "$tmp/cli30" "$tmp/cli" && ok "sample --step 30 = sample of the final weights" || bad "sample --step 30"
"$bin" sample "$tmp/with" --step 20 --tokens 20 >/dev/null 2>"$tmp/err" && grep -q "checkpoint of step 20" "$tmp/err" \
  && ok "sample --step 20 (an older checkpoint)" || bad "sample --step 20: $(cat "$tmp/err")"
fails "the manifest of step 10 (meta key 'm'+10) is missing" "$bin" export "$tmp/with" --step 10 --hf "$tmp/x10"
[ ! -e "$tmp/x10" ] && ok "a failed export leaves no folder" || bad "a failed export left $tmp/x10"
cp -r "$tmp/with" "$tmp/broken"
"$tool" "$tmp/broken/state" 1 flip-chunk 30 0 || bad "store_tool flip-chunk"
fails "rank 1, checkpoint of step 30: shard key" "$bin" export "$tmp/broken" --step 30 --hf "$tmp/xb"
[ ! -e "$tmp/xb" ] && ok "a corrupted source writes nothing" || bad "a corrupted source left $tmp/xb"

# --- the sampler -------------------------------------------------------------------
run=$tmp/without
one() { "$bin" sample "$run" --prompt "The " --tokens 40 "$@" 2>/dev/null; }
[ "$(one --seed 5)" = "$(one --seed 5)" ] && ok "the same seed, the same text" || bad "same seed, other text"
[ "$(one --seed 5)" != "$(one --seed 6)" ] && ok "another seed, other text" || bad "another seed, same text"
[ "$(one --temperature 0 --seed 5)" = "$(one --temperature 0 --seed 6)" ] && ok "greedy ignores the seed" \
  || bad "greedy depends on the seed"
[ "$(one --temperature 0)" = "$(one --temperature 0 --device guard)" ] \
  && ok "the guard backend (backend memory reached only through the op table) writes the same" \
  || bad "guard and cpu differ"
ids=$("$bin" sample "$run" --prompt-ids "84 104 101 32" --tokens 10 --temperature 0 --ids 2>/dev/null)
[ "$(echo "$ids" | wc -w)" = 10 ] && ok "--ids: $ids" || bad "--ids: '$ids'"
text=$(one --temperature 0 | od -An -c | tr -d ' \n')
idtext=$(python3 -c 'import sys; print("The " + bytes(int(x) for x in sys.argv[1].split()).decode("latin-1"))' \
  "$("$bin" sample "$run" --prompt "The " --tokens 40 --temperature 0 --ids 2>/dev/null)" | od -An -c | tr -d ' \n')
[ "$text" = "$idtext" ] && ok "text and --ids agree" || bad "text and ids differ"

# --- errors ------------------------------------------------------------------------
fails "the prompt is empty" "$bin" sample "$run" --prompt ""
fails "at most 124 can follow this prompt" "$bin" sample "$run" --prompt "The " --tokens 200
fails "expected a number >= 0" "$bin" sample "$run" --temperature -0.5
fails "is not a token of this model" "$bin" sample "$run" --prompt-ids "1 256"
mkdir -p "$tmp/noweights" && cp "$run/config.ini" "$tmp/noweights/"
fails "holds neither model.safetensors" "$bin" sample "$tmp/noweights"
fails "neither a run folder" "$bin" sample "$tmp/nowhere"
fails "give either RUN_DIR or --init-hf DIR" "$bin" sample
sed 's/^vocab_size = 256/vocab_size = 300/' "$run/config.ini" >"$tmp/big.ini"
"$bin" train "${args[@]}" --config "$tmp/big.ini" --set training.steps=4 --out "$tmp/v300" >/dev/null 2>&1 \
  || bad "a 300-token model"
fails "give the prompt as --prompt-ids" "$bin" sample "$tmp/v300" --prompt "hi"
"$bin" sample "$tmp/v300" --prompt-ids "299 3" --tokens 5 --temperature 0 2>/dev/null | grep -qE '^[0-9]+( [0-9]+){4}$' \
  && ok "a larger vocabulary prints ids" || bad "a larger vocabulary"

echo "sample: $pass passed, $fail failed"
[ $fail -eq 0 ]
