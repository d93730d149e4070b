#!/usr/bin/env bash
# run.sh OUT_DIR: the prepared GPU checks, in one call on one H200, from the
# bundle of tools/gpu/bundle.sh (this script lies in it), within a budget of
# RUN_BUDGET seconds (default 450: the device's 10-minute calls, with room).
# Each step has its own time limit, cut to what is left of the budget (a step
# the budget cannot reach is reported NOT RUN), writes OUT_DIR/<step>.log and
# adds a line to OUT_DIR/summary.md; a failing step does not stop the others;
# the exit status is the number of failed steps. The checks come first, in
# the order below; the benchmarks after them.
#   facts        nvidia-smi
#   ceilings     bf16 / fp32 GEMM rates, copy and pinned device-to-host bandwidth
#                (ceilings.json; calibration.json for the cost model)
#   kernels      every CUDA op against its CPU reference (test_cuda_ops, _dense)
#   sanitizer    compute-sanitizer memcheck on the kernel tests (where allowed)
#   fp64         the double build on the GPU against itself on the CPU, 20
#                steps at G = 1, 2 and 4 (ranks sharing the GPU, started by
#                the bundle's own mpirun, as root): every loss and weight
#                within 1e-9
#   fp32         the demo model for 200 steps on the GPU against the CPU's
#                curve committed in the repo (tests/gpu/ref_fp32.jsonl)
#   bf16         the same with bf16 GEMM operands, against the same curve
#                (first steps within 2%, the end within 5%)
#   rerun        the fp32 run again: the same bits
#   resume       the fp32 run failing at step 130, resumed from its checkpoint
#                of step 100: the same final weights
#   sample       `swiftmoe sample` of the fp32 run, greedy, 112 tokens: the
#                GPU's text equals the CPU's; tokens/s of both (sample.log)
#   bench        configs/bench-h200.ini in fp32 (bench_bf16: in bf16): tokens/s
#                and model FLOP utilisation against the bf16 rate R
#   parts        one MoE layer (the bench model at L = 1): forward+backward with
#                its plan sync, the optimizer step, the whole step (parts.md)
#   ckpt_stall   the bench model at L = 2, a checkpoint every 5 steps: the step
#                loop's wait for checkpoints against its step time
#   expert_gemm  the expert MLPs' GEMMs, per-expert loop against grouped, by rows
#                per expert, balanced and Zipf routing (expert_gemm.md)
#   sim          `swiftmoe sim --scenario h200x8` with calibration.json: the
#                cost model on this GPU's measured rates (sim_h200x8.txt)
set -uo pipefail
out=${1:?usage: run.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
mkdir -p "$out"
out=$(cd "$out" && pwd)
data=(--set data.path="$here/data/fortunes")
failed=0
budget=${RUN_BUDGET:-450}
job= # the step running now: killed with this script, so no run outlives it on the GPU
trap '[ -n "$job" ] && kill -KILL -- -"$job" 2>/dev/null' EXIT
trap 'exit 143' TERM INT
summary() { echo "$*" | tee -a "$out/summary.md"; }
# step NAME SECONDS COMMAND...: runs it (a command or a function of this
# script) in its own process group, killed after SECONDS, logs, records
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 10 ]; then
    summary "- $name: NOT RUN (the budget of $budget s is spent)"
    failed=$((failed + 1))
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS rc=0
  set -m # the job gets a process group of its own, to be killed whole
  ("$@") >"$out/$name.log" 2>&1 </dev/null &
  job=$!
  local pid=$job
  set +m
  (exec >/dev/null 2>&1; sleep "$limit"; kill -TERM -- -"$pid"; sleep 5; kill -KILL -- -"$pid") &
  local dog=$!
  wait "$pid" || rc=$?
  pkill -P "$dog" sleep 2>/dev/null; kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
  job=
  local verdict=PASS
  [ $rc -eq 77 ] && verdict=SKIPPED
  [ $rc -ne 0 ] && [ $rc -ne 77 ] && verdict="FAIL (exit $rc)" && failed=$((failed + 1))
  [ $((SECONDS - t0)) -ge "$limit" ] && verdict="$verdict, stopped at its limit of $limit s"
  summary "- $name: $verdict in $((SECONDS - t0)) s"
}
summary "# GPU run $(date -u +%FT%TZ)"

step facts 30 nvidia-smi
# teed FILE COMMAND...: COMMAND's output also into OUT_DIR/FILE, its exit status kept
teed() {
  local file=$1
  shift
  "$@" | tee "$out/$file"
  return "${PIPESTATUS[0]}"
}
step ceilings 120 teed ceilings.json smoe_gpu_ceilings 10
step kernels 120 bash -c "SMOE_CUDA_SYNC=1 test_cuda_ops && SMOE_CUDA_SYNC=1 test_cuda_dense"
if command -v compute-sanitizer >/dev/null; then
  step sanitizer 150 bash -c "compute-sanitizer --tool memcheck --error-exitcode 9 test_cuda_ops &&
                              compute-sanitizer --tool memcheck --error-exitcode 9 test_cuda_dense"
else
  summary "- sanitizer: SKIPPED (no compute-sanitizer on this host)"
fi

small=(--set model.dim=64 --set model.n_layers=2 --set model.seq_len=64 --set moe.expert_dim=96
       --set training.global_batch_size=8 --set training.steps=20 --set training.warmup_steps=2
       --set training.eval_every=10 --set training.eval_windows=4 --set metrics.progress=off
       --set training.threads=8 "${data[@]}")
fp64() {
  swiftmoe_f64 train "${small[@]}" --set training.device=cpu --out "$out/fp64.cpu" || return 1
  swiftmoe_f64 train "${small[@]}" --set training.device=cuda --out "$out/fp64.g1" || return 1
  local runs=("$out/fp64.g1") g
  # the bundle's Open MPI (bin/mpirun, relocated by env.sh's OPAL_* and PMIX_*);
  # the device machine runs as root; unbound, so each rank's 2 threads can
  # spread; -x passes env.sh's settings on, as a remote launch would need
  local pass=(-x LD_LIBRARY_PATH -x PATH -x OMP_NUM_THREADS)
  for v in $(compgen -e | grep -E '^(OPAL|PMIX)_'); do pass+=(-x "$v"); done
  for g in 2 4; do
    OMP_NUM_THREADS=2 mpirun --allow-run-as-root --oversubscribe --bind-to none -np $g "${pass[@]}" \
      swiftmoe_f64 train "${small[@]}" --set training.threads=2 --set training.device=cuda \
      --out "$out/fp64.g$g" || return 1
    runs+=("$out/fp64.g$g")
  done
  python3 "$here/compare_runs.py" 1e-9 "$out/fp64.cpu" "${runs[@]}"
}
step fp64 240 fp64

demo=(--set training.steps=200 --set training.eval_every=100 --set metrics.progress=off
      --set checkpoint.interval=50 --set checkpoint.keep=10 "${data[@]}")
fp32() {
  swiftmoe train "${demo[@]}" --set training.device=cuda --out "$out/fp32" &&
    python3 "$here/curve.py" "$here/ref_fp32.jsonl" "$out/fp32/metrics.jsonl"
}
step fp32 240 fp32
bf16() { # bf16 GEMM operands against the same fp32 CPU curve, with looser bounds
  swiftmoe train "${demo[@]}" --set training.device=cuda --set training.dtype=bf16 \
    --out "$out/bf16" && python3 "$here/curve.py" "$here/ref_fp32.jsonl" \
    "$out/bf16/metrics.jsonl" 0.02 0.05
}
step bf16 240 bf16
rerun() {
  swiftmoe train "${demo[@]}" --set training.device=cuda --out "$out/fp32.again" &&
    cmp "$out/fp32/model.safetensors" "$out/fp32.again/model.safetensors"
}
step rerun 240 rerun
resume() { # a failure injected at step 130, then --resume auto: from step 100
  SMOE_FAIL_AT=0:130 swiftmoe train "${demo[@]}" --set training.device=cuda \
    --out "$out/fp32.resumed" && return 1
  swiftmoe train "${demo[@]}" --set training.device=cuda --out "$out/fp32.resumed" \
    --resume auto && cmp "$out/fp32/model.safetensors" "$out/fp32.resumed/model.safetensors"
}
step resume 240 resume
sample() { # greedy on both devices: the same bytes; each prints its tokens/s
  local p=(sample "$out/fp32" --prompt "Q: What " --tokens 112 --temperature 0 --threads 1)
  swiftmoe "${p[@]}" --device cuda >"$out/sample.cuda.txt" &&
    swiftmoe "${p[@]}" --device cpu >"$out/sample.cpu.txt" &&
    cmp "$out/sample.cuda.txt" "$out/sample.cpu.txt" && cat "$out/sample.cuda.txt"
}
step sample 60 sample
bench=(--config "$here/configs/bench-h200.ini" "${data[@]}")
bench() { # NAME [--set ...]: the bench model's run, its summary printed
  local name=$1
  shift
  swiftmoe train "${bench[@]}" "$@" --out "$out/$name" && cat "$out/$name/summary.json"
}
parts() {
  for d in fp32 bf16; do
    smoe_step_parts "${bench[@]:0:2}" --set model.n_layers=1 --set training.dtype=$d \
      --iters 10 || return 1
  done
}
step bench 300 bench bench
step bench_bf16 300 bench bench.bf16 --set training.dtype=bf16
step parts 240 teed parts.md parts
step ckpt_stall 240 bench ckpt --set model.n_layers=2 --set training.steps=20 \
  --set checkpoint.interval=5 --set checkpoint.when_busy=skip
step expert_gemm 180 teed expert_gemm.md smoe_expert_gemm 5
python3 "$here/calibration.py" "$out" >"$out/calibration.json" 2>>"$out/summary.md" ||
  failed=$((failed + 1))
# the cluster cost model with this GPU's measured rates (engine/cost.h)
step sim 60 teed sim_h200x8.txt swiftmoe sim --scenario h200x8 --calibration "$out/calibration.json"
summary "failed steps: $failed"
exit $failed
