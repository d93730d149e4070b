#!/usr/bin/env bash
# The gradient log (checkpoint.log_gradients = on) against checkpoints alone,
# measured in the same run, on the demo model (configs/tiny.ini's defaults,
# the built-in data), 1 and 4 ranks:
#  - bytes written per step: the log's records (plus its checkpoints every
#    interval), a full checkpoint every step (interval 1), and the default
#    interval (100) alone; stored bytes, summed over ranks (`ckpt ls`);
#  - the step: mean step time with the log off and on (alternating, two
#    rounds; the first 5 steps left out), and the log's own stall (staging its
#    gradients, waiting for a buffer) as a share of the step;
#  - restore time as a function of the records replayed (1, 10, 100): a
#    log-on run checkpointed only at step 0, resumed with --resume K on a copy
#    of its folder (summary.json resume_s; the resumed run's steps end at K);
#    against 0: the log-off run's checkpoint of step 100 restored.
# usage: tools/bench/gradlog_bench.sh [BUILD_DIR] [--set K=V ...] > results.md
set -euo pipefail
build=${1:-build}
shift || true
bin=$build/swiftmoe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
steps=110
args=(--set training.steps=$steps --set training.eval_every=0 --set metrics.progress=off "$@")
launch() { local n=$1; shift; if [ "$n" = 1 ]; then "$bin" "$@"; else mpirun --oversubscribe --bind-to none -np "$n" "$bin" "$@"; fi; }
echo "# The gradient log, measured ($(date -u +%F), $(getconf _NPROCESSORS_ONLN) cores, $bin)"
echo
echo "The demo model, \`swiftmoe train ${args[*]}\`; log = checkpoint.log_gradients."
for n in 1 4; do
  echo
  echo "## $n rank$([ $n = 1 ] || echo s)"
  echo
  echo "| run | interval | log | mean step s | log stall s / step | log stored B / step (all ranks) | checkpoint stored B (all ranks) |"
  echo "|---|---|---|---|---|---|---|"
  for run in off1 on1 off2 on2 every; do
    out=$work/$n-$run
    case $run in
      off*) set_=(--set checkpoint.interval=100 --set checkpoint.log_gradients=off) ;;
      on*) set_=(--set checkpoint.interval=100 --set checkpoint.log_gradients=on) ;;
      every) set_=(--set checkpoint.interval=1 --set checkpoint.log_gradients=off) ;;
    esac
    launch "$n" train "${args[@]}" "${set_[@]}" --out "$out" >"$out.log" 2>&1 || { tail -5 "$out.log"; exit 1; }
    "$bin" ckpt ls "$out" >"$out.ls"
    python3 - "$out" "$run" <<'PY'
import json, re, sys
out, run = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(out + "/metrics.jsonl")][5:]
step = sum(r["step_time_s"] for r in rows) / len(rows)
stall = [r["gradient_log"]["stall_s"] for r in rows if "gradient_log" in r]
ls = open(out + ".ls").read().split("\n")
ck = [int(l.split()[-3]) for l in ls if re.match(r"^ +\d+ +full ", l)]
log = [l.split() for l in ls if re.match(r"^ +\d+ +\d+ +\d+ +\d+\*? +\d+ ", l)]
per = sum(int(f[4]) / int(f[3].rstrip("*")) for f in log) if log else 0
interval = 1 if run == "every" else 100
print("| %s | %d | %s | %.4f | %s | %s | %d |" % (run, interval, "on" if stall else "off", step,
      "%.5f (%.2f%%)" % (sum(stall) / len(stall), 100 * sum(stall) / len(stall) / step) if stall else "-",
      "%.0f" % per if log else "-", ck[-1] if ck else 0))
json.dump({"step": step, "per": per, "ck": ck[-1] if ck else 0,
           "stall": sum(stall) / len(stall) if stall else 0}, open(out + ".json", "w"))
PY
  done
  python3 - "$work/$n" <<'PY'
import json, sys
w = sys.argv[1]
r = {k: json.load(open("%s-%s.json" % (w, k))) for k in ("off1", "on1", "off2", "on2", "every")}
off = (r["off1"]["step"] + r["off2"]["step"]) / 2
on = (r["on1"]["step"] + r["on2"]["step"]) / 2
ck = r["every"]["ck"]
log = (r["on1"]["per"] + r["on2"]["per"]) / 2
print()
print("- bytes written per step (all ranks): log %.0f + its checkpoints %.0f = %.0f; a full "
      "checkpoint every step %d (%.2fx the log's); the default interval alone %.0f (%.2fx)"
      % (log, ck / 100, log + ck / 100, ck, ck / (log + ck / 100), ck / 100, (ck / 100) / (log + ck / 100)))
print("- mean step with the log on / off: %.4f / %.4f s = %.3fx; the log's stall %.2f%% of a step"
      % (on, off, on / off, 100 * (r["on1"]["stall"] + r["on2"]["stall"]) / 2 / on))
PY
  echo
  # restore time: a log-on run whose only checkpoint is step 0 (interval past
  # its end), resumed at K (K records replayed); against the log-off run's
  # checkpoint of step 100 restored with nothing to replay
  out=$work/$n-replay
  launch "$n" train "${args[@]}" --set checkpoint.interval=1000 --set checkpoint.log_gradients=on \
    --out "$out" >"$out.log" 2>&1 || { tail -5 "$out.log"; exit 1; }
  echo
  echo "| restore | records replayed | resume_s |"
  echo "|---|---|---|"
  for k in 0 1 10 100; do
    src=$out; log=on; at=$k
    [ $k = 0 ] && src=$work/$n-off1 log=off at=100
    cp -r "$src" "$work/$n-r$k"
    launch "$n" train "${args[@]}" --set training.steps=$at --set checkpoint.interval=1000 \
      --set checkpoint.log_gradients=$log --out "$work/$n-r$k" --resume $at >"$work/$n-r$k.log" 2>&1 ||
      { tail -5 "$work/$n-r$k.log"; exit 1; }
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print('| %s | %s | %.3f |' % (sys.argv[3], sys.argv[2], s.get('resume_s', 0)))" \
      "$work/$n-r$k/summary.json" "$k" "$([ $k = 0 ] && echo "checkpoint of step 100" || echo "checkpoint of step 0 + log to step $k")"
    rm -rf "$work/$n-r$k"
  done
done
