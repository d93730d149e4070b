#!/usr/bin/env bash
# What a run folder is protected from (float build, small model):
#  - a fresh `train --out DIR` on a folder that holds a run is refused: exit 2,
#    one line naming the folder, its newest complete step, --resume auto and
#    --overwrite; nothing in the folder changes (every file's checksum);
#  - --overwrite starts over, says so, and leaves only the new run's
#    checkpoints; --overwrite with --resume is a usage error;
#  - --resume auto with one rank's store missing (4 ranks, state/rank-2
#    deleted) is refused: exit 1, naming rank 2 and the step the others hold;
#    nothing changes and rank-2 is not recreated; but a first checkpoint that
#    never became complete on every rank (a crash while writing it: rank 1's
#    manifest removed) is an unfinished write, and the resume starts at step 0;
#  - a second job on a folder whose job is running stops at the folder's lock
#    (exit 1, "in use"), before writing anything: config.ini stays the first
#    job's; a resume that fails (other shapes) changes nothing either;
#  - a short run needs no warmup setting: `--set training.steps=20` trains.
# usage: run_folder.sh path/to/swiftmoe path/to/store_tool
set -uo pipefail
bin=$1 tool=$2
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'pkill -9 -f "$tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(timeout -k 5 120 mpirun --oversubscribe --bind-to none -np 4)
args=(--set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 --set model.seq_len=32
      --set training.global_batch_size=8 --set training.steps=6 --set training.eval_every=0
      --set training.eval_windows=4 --set metrics.progress=off --set training.threads=1
      --set checkpoint.interval=3)
pass=0 fail=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
# every file of a folder with its checksum (the lock file holds the last pid: left out)
sums() { (cd "$1" && find . -type f ! -name .swiftmoe.lock | sort | xargs md5sum); }

# --- a fresh run on a folder that holds a run --------------------------------------
d=$tmp/a
timeout 120 "$bin" train "${args[@]}" --out "$d" 2>/dev/null || bad "setup run"
sums "$d" >"$tmp/before"
rc=0
timeout 60 "$bin" train "${args[@]}" --out "$d" 2>"$tmp/err" || rc=$?
sums "$d" >"$tmp/after"
msg=$(cat "$tmp/err")
if [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^swiftmoe train: $d already holds a run (its newest complete checkpoint is step 6" <<<"$msg" &&
   grep -q -- "--resume auto" <<<"$msg" && grep -q -- "--overwrite" <<<"$msg" && cmp -s "$tmp/before" "$tmp/after"; then
  ok "fresh run on a used folder: exit 2, nothing changed: ${msg:0:150}..."
else
  bad "fresh run on a used folder: exit $rc: $msg"; diff "$tmp/before" "$tmp/after" | head -5
fi
rc=0
timeout 60 "$bin" train "${args[@]}" --out "$d" --overwrite --resume auto 2>"$tmp/err" || rc=$?
[ $rc -eq 2 ] && grep -q "give one of them" "$tmp/err" && ok "--overwrite with --resume: usage error" ||
  bad "--overwrite with --resume: exit $rc: $(cat "$tmp/err")"
rc=0
timeout 120 "$bin" train "${args[@]}" --set training.steps=9 --out "$d" --overwrite 2>"$tmp/err" || rc=$?
steps=$("$bin" ckpt ls "$d" | awk '$1 ~ /^[0-9]+$/ { printf "%s ", $1 }')
if [ $rc -eq 0 ] && grep -q "^--overwrite: removed the earlier run's 2 checkpoints" "$tmp/err" &&
   [ "$steps" = "6 9 " ] && [ "$(grep -c '"step"' "$d/metrics.jsonl")" -eq 9 ]; then
  ok "--overwrite: the earlier run's checkpoints and metrics replaced (checkpoints now: $steps)"
else
  bad "--overwrite: exit $rc, checkpoints '$steps'"; tail -3 "$tmp/err"
fi

# a resume that fails (other shapes) leaves the folder as it was, config.ini
# included, and its checkpoints (RocksDB's own files change on any open)
user() { sums "$1" | grep -v " ./state/"; "$bin" ckpt ls "$1"; }
user "$d" >"$tmp/before"
rc=0
timeout 60 "$bin" train "${args[@]}" --set model.dim=64 --out "$d" --resume auto 2>"$tmp/err" || rc=$?
user "$d" >"$tmp/after"
[ $rc -eq 1 ] && grep -q "other shapes" "$tmp/err" && cmp -s "$tmp/before" "$tmp/after" &&
  ok "a failed resume (other shapes): exit 1, nothing changed" ||
  { bad "failed resume: exit $rc: $(tail -1 "$tmp/err")"; diff "$tmp/before" "$tmp/after" | head -5; }

# --- --resume auto with a rank's store missing, and its copy too ---------------------
# (with the copy, the store is rebuilt: tests/redundancy.sh)
d=$tmp/b
"${mpi[@]}" "$bin" train "${args[@]}" --out "$d" >/dev/null 2>&1 || bad "4-rank setup run"
rm -rf "$d/state/rank-2" "$d/state/copy/rank-2"
sums "$d" >"$tmp/before"
rc=0
"${mpi[@]}" "$bin" train "${args[@]}" --set training.steps=12 --out "$d" --resume auto 2>"$tmp/err" >/dev/null || rc=$?
sums "$d" >"$tmp/after"
msg=$(grep "swiftmoe train" "$tmp/err")
if [ $rc -eq 1 ] && [ "$(wc -l <<<"$msg")" -eq 1 ] && grep -q "rank 2 has no state store" <<<"$msg" &&
   grep -q "ranks 0, 1, 3 hold checkpoints up to step 6" <<<"$msg" && [ ! -e "$d/state/rank-2" ] &&
   cmp -s "$tmp/before" "$tmp/after"; then
  ok "a missing rank store: exit 1, nothing changed: ${msg:0:170}..."
else
  bad "a missing rank store: exit $rc: $msg"; diff "$tmp/before" "$tmp/after" | head -5
fi

# a crash during the first checkpoint: ranks 0, 2, 3 hold it, rank 1 does not, and
# no checkpoint was ever agreed: the resume starts from step 0
d=$tmp/e
SMOE_FAIL_AT=0:3 "${mpi[@]}" "$bin" train "${args[@]}" --out "$d" >/dev/null 2>&1
gone "$d"
"$tool" "$d/state" 1 delete-manifest 3 || bad "store_tool"
rc=0
"${mpi[@]}" "$bin" train "${args[@]}" --out "$d" --resume auto 2>"$tmp/err" >/dev/null || rc=$?
if [ $rc -eq 0 ] && grep -q "resume: no checkpoint was ever complete on every rank; starting from step 0" "$tmp/err"; then
  ok "a first checkpoint never complete on every rank: resumed from step 0"
else
  bad "unfinished first checkpoint: exit $rc: $(grep "swiftmoe" "$tmp/err" | tail -2)"
fi

# --- a second job on a running job's folder ------------------------------------------
d=$tmp/c
timeout 120 "$bin" train "${args[@]}" --set training.steps=100000 --out "$d" 2>/dev/null &
first=$!
for _ in $(seq 300); do [ -s "$d/metrics.jsonl" ] && break; sleep 0.1; done
cp "$d/config.ini" "$tmp/config.first"
rc=0
timeout 60 "$bin" train "${args[@]}" --set training.lr=0.1 --out "$d" --resume auto 2>"$tmp/err" || rc=$?
kill $first 2>/dev/null
wait $first 2>/dev/null
if [ $rc -eq 1 ] && grep -q "$d is in use by another swiftmoe job (pid [0-9]*)" "$tmp/err" &&
   cmp -s "$d/config.ini" "$tmp/config.first"; then
  ok "a second job on a running job's folder: $(cut -c1-140 "$tmp/err")...; config.ini unchanged"
else
  bad "second job: exit $rc: $(cat "$tmp/err")"; diff "$d/config.ini" "$tmp/config.first" | head -4
fi

# --- a short run with the default warmup ----------------------------------------------
rc=0
timeout 120 "$bin" train --set model.dim=32 --set model.n_layers=2 --set moe.expert_dim=48 \
  --set model.seq_len=32 --set training.global_batch_size=8 --set training.eval_windows=4 \
  --set metrics.progress=off --set training.steps=20 --out "$tmp/d" 2>"$tmp/err" || rc=$?
[ $rc -eq 0 ] && grep -q "^warmup_steps = auto" "$tmp/d/config.ini" &&
  ok "--set training.steps=20 trains with warmup_steps = auto (1 step)" ||
  bad "short run: exit $rc: $(tail -2 "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
