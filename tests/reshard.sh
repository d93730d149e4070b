#!/usr/bin/env bash
# `swiftmoe ckpt reshard` (double build, mpirun): a checkpoint re-sliced for
# another number of ranks continues the same trajectory.
#  - a 4-rank run with checkpoints at 5 and 10 is the reference; the same run
#    killed at step 7 is resharded at step 5 to 2 and to 3 ranks and resumed
#    there to step 10: every step's loss within 1e-9 of the reference, and
#    the final weights too; the 2-rank folder's step-5 checkpoint resharded
#    back to 4 ranks does the same (2 -> 4);
#  - online: `--resume auto` on 2 ranks of a 4-rank run's folder reshards on
#    load (the old stores kept aside), and 2 -> 4: the same equality;
#  - `swiftmoe run --nproc-on-restart 2` restarts a crashed 4-rank job on 2
#    ranks, which reshards on resume: the same equality;
#  - refusals in one line, nothing written: an existing destination, a world
#    the batch does not divide, a step without a checkpoint, a corrupted
#    chunk (naming rank, step and key), a missing rank store.
# usage: reshard.sh path/to/swiftmoe_f64 path/to/store_tool
set -uo pipefail
bin=$1
tool=$2
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
keep_logs
args=(--set model.dim=64 --set moe.expert_dim=96 --set training.steps=10
      --set training.warmup_steps=2 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set checkpoint.interval=5
      --set training.global_batch_size=12)

echo "the reference (4 ranks) and the run killed at step 7 ..."
mpi 4 "$bin" train "${args[@]}" --out "$tmp/ref" >"$tmp/ref.log" 2>&1 || bad "reference run"
SMOE_FAIL_AT=0:7 mpi 4 "$bin" train "${args[@]}" --out "$tmp/killed" >"$tmp/killed.log" 2>&1 \
  && bad "the injected failure did not fail"
for M in 2 3; do
  "$bin" ckpt reshard "$tmp/killed" "$tmp/g$M" --world $M >"$tmp/rs$M.log" 2>&1 \
    && grep -q "resharded the checkpoint of step 5 from 4 to $M ranks" "$tmp/rs$M.log" \
    || bad "reshard to $M: $(cat "$tmp/rs$M.log")"
  mpi $M "$bin" train "${args[@]}" --out "$tmp/g$M" --resume auto >"$tmp/g$M.log" 2>&1 \
    || bad "resume on $M ranks: $(tail -3 "$tmp/g$M.log")"
  if r=$(same "$tmp/ref" "$tmp/g$M"); then ok "4 -> $M at step 5, resumed to 10: $r"; else bad "4 -> $M: $r"; fi
done
"$bin" ckpt reshard "$tmp/g2" "$tmp/back4" --world 4 --step 5 >"$tmp/rsb.log" 2>&1 || bad "2 -> 4: $(cat "$tmp/rsb.log")"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/back4" --resume auto >"$tmp/back4.log" 2>&1 \
  || bad "resume on 4 ranks: $(tail -3 "$tmp/back4.log")"
if r=$(same "$tmp/ref" "$tmp/back4"); then ok "2 -> 4 at step 5, resumed to 10: $r"; else bad "2 -> 4: $r"; fi

# online: --resume auto on another number of ranks reshards on load
cp -r "$tmp/killed" "$tmp/on2"
mpi 2 "$bin" train "${args[@]}" --out "$tmp/on2" --resume auto >"$tmp/on2.log" 2>&1 \
  || bad "resume of a 4-rank checkpoint on 2 ranks: $(tail -3 "$tmp/on2.log")"
grep -q "resharded the checkpoint of step 5 from 4 to 2 ranks" "$tmp/on2.log" && [ -d "$tmp/on2/state.from-G4/rank-3" ] \
  && ok "--resume auto on 2 ranks resharded the 4-rank checkpoint (old stores kept)" || bad "no online reshard: $(grep -i reshard "$tmp/on2.log")"
if r=$(same "$tmp/ref" "$tmp/on2"); then ok "online 4 -> 2: $r"; else bad "online 4 -> 2: $r"; fi
SMOE_FAIL_AT=0:7 mpi 2 "$bin" train "${args[@]}" --out "$tmp/killed2" >/dev/null 2>&1 && bad "no failure at 7"
mpi 4 "$bin" train "${args[@]}" --out "$tmp/killed2" --resume auto >"$tmp/on4.log" 2>&1 \
  || bad "resume of a 2-rank checkpoint on 4 ranks: $(tail -3 "$tmp/on4.log")"
if r=$(same "$tmp/ref" "$tmp/killed2"); then ok "online 2 -> 4: $r"; else bad "online 2 -> 4: $r"; fi

# the supervisor restarts a crashed 4-rank job on 2 ranks (rank 3 fails at step 7;
# there is no rank 3 after the restart)
SMOE_FAIL_AT=3:7 timeout 300 "$bin" run --max-restarts 2 --backoff 0 --stall-timeout 120 \
  --nproc-on-restart 2 -- mpirun --oversubscribe --bind-to none -np 4 "$bin" train "${args[@]}" \
  --out "$tmp/sup" >"$tmp/sup.log" 2>&1 || bad "swiftmoe run --nproc-on-restart 2: $(tail -3 "$tmp/sup.log")"
grep -q "restart 1 on 2 ranks" "$tmp/sup.log" && grep -q "from 4 to 2 ranks" "$tmp/sup.log" \
  && ok "swiftmoe run --nproc-on-restart 2: the crashed 4-rank job ended on 2 ranks" \
  || bad "no restart on 2 ranks: $(grep -E 'restart|reshard' "$tmp/sup.log")"
if r=$(same "$tmp/ref" "$tmp/sup"); then ok "supervised 4 -> 2: $r"; else bad "supervised 4 -> 2: $r"; fi

fails "exists; give a new folder" "$bin" ckpt reshard "$tmp/killed" "$tmp/g2" --world 2
fails "is not divisible by 5 ranks" "$bin" ckpt reshard "$tmp/killed" "$tmp/x5" --world 5
[ ! -e "$tmp/x5" ] && ok "a refused world writes nothing" || bad "$tmp/x5 left behind"
fails "the manifest of step 7 (meta key 'm'+7) is missing" "$bin" ckpt reshard "$tmp/killed" "$tmp/x7" --world 2 --step 7
cp -r "$tmp/killed" "$tmp/broken"
"$tool" "$tmp/broken/state" 2 flip-chunk 5 0 || bad "store_tool flip-chunk"
fails "rank 2, checkpoint of step 5: shard key (step 5, region master, chunk 0) is corrupted" \
  "$bin" ckpt reshard "$tmp/broken" "$tmp/xb" --world 2
[ ! -e "$tmp/xb" ] && ok "a corrupted source writes nothing" || bad "$tmp/xb left behind"
rm -rf "$tmp/broken/state/rank-3" "$tmp/broken/state/copy/rank-3" # the store and its copy
fails "rank-3" "$bin" ckpt reshard "$tmp/broken" "$tmp/xm" --world 2

echo "reshard: $pass passed, $fail failed"
[ $fail -eq 0 ]
