#!/usr/bin/env bash
# Checkpoints that survive a lost node (checkpoint.redundancy = buddy, double
# build, mpirun). A 4-rank run with checkpoints at 3 (full), 6 (a delta) and
# 9 is the reference; then "node 2 is lost": its store (state/rank-2) and the
# copy it kept of rank 1's (state/copy/rank-1) are deleted.
#  - every checkpoint of the reference has its 4 copies (ckpt ls), and the
#    copies' bytes went under their own phase in metrics.jsonl;
#  - `--resume 6` on 4 ranks rebuilds rank 2's store from the copy rank 3
#    keeps and continues to step 10; on 3 ranks it reshards on load reading
#    that copy: every step's loss and the final weights within 1e-9 of the
#    reference; the copies are whole again after the next checkpoint;
#  - a job killed at step 8 that loses node 2 resumes with --resume auto:
#    the same;
#  - `ckpt reshard` of the damaged folder reads the copy;
#  - a corrupted copy (step 9's): a resume of exactly that step fails naming
#    the rank, step and key; --resume auto falls back to step 6 and still
#    equals the reference;
#  - with the store and its copy both gone, the resume is refused naming the
#    rank, and nothing is changed; with checkpoint.redundancy = none there
#    are no copies and no copy bytes.
# usage: redundancy.sh path/to/swiftmoe_f64 path/to/store_tool
set -uo pipefail
bin=$1
tool=$2
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
keep_logs
args=(--set model.dim=64 --set moe.expert_dim=96 --set training.steps=10
      --set training.warmup_steps=2 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=3
      --set checkpoint.full_every=2 --set checkpoint.keep=3 --set training.global_batch_size=12)
# lose DIR: node 2's disk is gone: its store and the copy it kept of rank 1's
lose() { rm -rf "$1/state/rank-2" "$1/state/copy/rank-1"; }
# copies DIR STEP: the ls line of STEP's "copies" column
copies() { "$bin" ckpt ls "$1" 2>/dev/null | awk -v s="$2" '$1 == s {print ($2 == "full" ? $4 : $7)}'; }

echo "the reference (4 ranks, checkpoints at 3, 6 and 9) ..."
mpi 4 "$bin" train "${args[@]}" --out "$tmp/ref" >"$tmp/ref.log" 2>&1 || bad "reference run"
[ "$(copies "$tmp/ref" 3)$(copies "$tmp/ref" 6)$(copies "$tmp/ref" 9)" = "4/44/44/4" ] \
  && ok "every checkpoint has a copy on the next rank: $(copies "$tmp/ref" 6) (ckpt ls)" \
  || bad "copies: $("$bin" ckpt ls "$tmp/ref")"
python3 - "$tmp/ref" <<'PY' && ok "the copies' bytes are counted under checkpoint_copy" || bad "checkpoint_copy bytes"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
sent = sum(r["bytes"]["checkpoint_copy"] for r in rows)
# at least the step-3 checkpoint's bytes (14 MB over the 4 ranks), at most
# three checkpoints' and their logs
assert 13e6 < sent < 3 * 15e6, sent
PY

cp -r "$tmp/ref" "$tmp/n4"
lose "$tmp/n4"
"$bin" ckpt ls "$tmp/n4" >"$tmp/ls.txt" 2>&1
# two checkpoints left with a copy (ranks 0 and 3's); rank 2's copy stands in for its store
[ "$(copies "$tmp/n4" 6)" = "2/4*" ] && grep -q "rank 2's store is missing" "$tmp/ls.txt" \
  && ok "ckpt ls after the loss: $(copies "$tmp/n4" 6), rank 2 read from its copy" || bad "ls: $(cat "$tmp/ls.txt")"
"$bin" ckpt verify "$tmp/n4" >"$tmp/verify.txt" 2>&1 && grep -q "rank 2 (its copy), checkpoint of step 6" "$tmp/verify.txt" \
  && ok "ckpt verify reads rank 2's checkpoints from its copy" || bad "verify: $(tail -3 "$tmp/verify.txt")"
cp -r "$tmp/n4" "$tmp/n3"
cp -r "$tmp/n4" "$tmp/off"

mpi 4 "$bin" train "${args[@]}" --out "$tmp/n4" --resume 6 >"$tmp/n4.log" 2>&1 \
  || bad "resume on 4 ranks: $(tail -3 "$tmp/n4.log")"
grep -q "rank 2's state store was missing from .*restored from the copy rank 3 keeps" "$tmp/n4.log" \
  && ok "rank 2's store rebuilt from the copy rank 3 kept" || bad "no restore: $(head -3 "$tmp/n4.log")"
if r=$(same "$tmp/ref" "$tmp/n4"); then ok "lost node, resumed at 6 on 4 ranks: $r"; else bad "on 4 ranks: $r"; fi
[ "$(copies "$tmp/n4" 9)" = "4/4" ] && ok "the next checkpoint has its 4 copies again" \
  || bad "copies after the resume: $("$bin" ckpt ls "$tmp/n4")"

mpi 3 "$bin" train "${args[@]}" --out "$tmp/n3" --resume 6 >"$tmp/n3.log" 2>&1 \
  || bad "resume on 3 ranks: $(tail -3 "$tmp/n3.log")"
grep -q "reading the copy the next rank kept" "$tmp/n3.log" && grep -q "from 4 to 3 ranks" "$tmp/n3.log" \
  && ok "on 3 ranks: resharded on load, rank 2's slices read from its copy" || bad "no reshard: $(head -3 "$tmp/n3.log")"
if r=$(same "$tmp/ref" "$tmp/n3"); then ok "lost node, resumed at 6 on 3 ranks: $r"; else bad "on 3 ranks: $r"; fi

"$bin" ckpt reshard "$tmp/off" "$tmp/off2" --world 2 --step 6 >"$tmp/off.log" 2>&1 \
  || bad "offline reshard: $(cat "$tmp/off.log")"
mpi 2 "$bin" train "${args[@]}" --out "$tmp/off2" --resume auto >"$tmp/off2.log" 2>&1 \
  || bad "resume on 2 ranks: $(tail -3 "$tmp/off2.log")"
if r=$(same "$tmp/ref" "$tmp/off2"); then ok "ckpt reshard of the damaged folder to 2 ranks: $r"; else bad "offline: $r"; fi

echo "a job killed at step 8 loses node 2 ..."
SMOE_FAIL_AT=0:8 mpi 4 "$bin" train "${args[@]}" --out "$tmp/kill" >"$tmp/kill.log" 2>&1 \
  && bad "the injected failure did not fail"
gone "$tmp/kill"
lose "$tmp/kill"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/kill" --resume auto >"$tmp/kill2.log" 2>&1 \
  || bad "--resume auto after the loss: $(tail -3 "$tmp/kill2.log")"
if r=$(same "$tmp/ref" "$tmp/kill"); then
  ok "killed at 8, node 2 lost, --resume auto ($(grep -o 'resumed from the checkpoint of step [0-9]*' "$tmp/kill2.log")): $r"
else bad "killed: $r"; fi

echo "a corrupted copy ..."
cp -r "$tmp/ref" "$tmp/bad"
lose "$tmp/bad"
"$tool" "$tmp/bad/state/copy" 2 flip-chunk 9 0 || bad "store_tool flip-chunk"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/bad" --resume 9 >"$tmp/bad.log" 2>&1 \
  && bad "a resume of exactly step 9 from a corrupted copy succeeded"
grep -q "rank 2, checkpoint of step 9: shard key (step 9, region master, chunk 0) is corrupted" "$tmp/bad.log" \
  && ok "the corrupted copy is named: rank 2, step 9, its key" || bad "no message: $(grep -i corrupt "$tmp/bad.log" | head -2)"
gone "$tmp/bad"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/bad" --resume auto >"$tmp/bad2.log" 2>&1 \
  || bad "--resume auto over a corrupted copy: $(tail -3 "$tmp/bad2.log")"
grep -q "resumed from the checkpoint of step 6" "$tmp/bad2.log" \
  && ok "--resume auto falls back to step 6, whose copy is sound" || bad "$(grep -i resumed "$tmp/bad2.log")"
if r=$(same "$tmp/ref" "$tmp/bad"); then ok "resumed past a corrupted copy: $r"; else bad "corrupted copy: $r"; fi

cp -r "$tmp/ref" "$tmp/gone"
lose "$tmp/gone"
rm -rf "$tmp/gone/state/copy/rank-2"
sums() { (cd "$1" && find . -type f ! -name .swiftmoe.lock | sort | xargs md5sum); }
sums "$tmp/gone" >"$tmp/before.md5"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/gone" --resume auto >"$tmp/gone.log" 2>&1 \
  && bad "a resume with rank 2's store and copy gone succeeded"
grep -q "rank 2 has no state store" "$tmp/gone.log" && ok "store and copy gone: refused naming rank 2" \
  || bad "refusal: $(grep -v '^\[' "$tmp/gone.log" | head -3)"
sums "$tmp/gone" | diff - "$tmp/before.md5" >/dev/null \
  && ok "the refused resume changed nothing" || bad "the refused resume changed files"

mpi 4 "$bin" train "${args[@]}" --set checkpoint.redundancy=none --out "$tmp/none" >"$tmp/none.log" 2>&1 \
  || bad "redundancy none"
[ ! -e "$tmp/none/state/copy" ] && ! grep -q '"checkpoint_copy": *[1-9]' "$tmp/none/metrics.jsonl" \
  && [ "$(copies "$tmp/none" 6)" = "-" ] && ok "checkpoint.redundancy = none: no copies, no copy bytes" \
  || bad "redundancy none made copies"

echo "redundancy: $pass passed, $fail failed"
[ $fail -eq 0 ]
