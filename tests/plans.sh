#!/usr/bin/env bash
# The placement log read back (`swiftmoe ckpt plans`, `swiftmoe ckpt replay`)
# and runs started from it (`--init-placement`), end to end on real runs:
#  - a 4-rank swiftmoe run's log: the audit reproduces every plan; a record
#    altered in rank 0's store (two slots swapped: still a valid placement)
#    is caught, exit 1 naming its step;
#  - summary, table, csv (steps x layers x experts rows), json, svg and png
#    from the CLI; --follow redraws; errors for a folder that is no state
#    folder, an empty log, layers and steps out of range, an unknown format,
#    an --out that exists; the summary of 40 layers x 256 experts fits one
#    screen (60 lines, 120 columns);
#  - what-if: several policies side by side, json lines; uniform synthetic
#    loads: swiftmoe and static are both balanced (nothing to buy);
#  - a static run from the recorded skewed run's placement (--init-placement)
#    is less imbalanced than uniform static on the same data; a log of other
#    shapes or a missing step is refused.
# usage: plans.sh path/to/swiftmoe path/to/store_tool path/to/plans_synth
set -uo pipefail
bin=$1
tool=$2
synth=$3
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
keep_logs
# aux loss off: routing stays skewed, so placement matters
args=(--set model.dim=64 --set moe.expert_dim=96 --set training.steps=30
      --set training.warmup_steps=4 --set training.eval_every=0 --set training.eval_windows=8
      --set metrics.progress=off --set training.threads=1 --set moe.aux_loss_coef=0
      --set checkpoint.interval=10)

echo "recording a 4-rank swiftmoe run ..."
run=$tmp/rec
mpi 4 "$bin" train "${args[@]}" --out "$run" >"$tmp/rec.log" 2>&1 || bad "the recorded run"

# --- the audit --------------------------------------------------------------------
if "$bin" ckpt replay "$run" >"$tmp/audit" 2>&1 && grep -q "30 plans of steps 1..30 .* every one reproduced exactly" "$tmp/audit"; then
  ok "audit: $(head -1 "$tmp/audit" | cut -c1-120)"
else
  bad "audit of the real run: $(cat "$tmp/audit")"
fi
cp -r "$run" "$tmp/tampered"
if "$tool" "$tmp/tampered/state" 0 plan 17 swap 2>"$tmp/err"; then
  "$bin" ckpt replay "$tmp/tampered" >"$tmp/audit2" 2>&1
  rc=$?
  if [ $rc -eq 1 ] && grep -q "MISMATCH step 17, layer" "$tmp/audit2"; then
    ok "altered record caught: $(head -1 "$tmp/audit2")"
  else
    bad "altered record not caught (rc $rc): $(cat "$tmp/audit2")"
  fi
else
  bad "store_tool swap: $(cat "$tmp/err")"
fi

# --- the views --------------------------------------------------------------------
"$bin" ckpt plans "$run" >"$tmp/summary" 2>&1 || bad "summary: $(cat "$tmp/summary")"
if [ "$(grep -cE '^ +[0-3] ' "$tmp/summary")" = 4 ] && grep -q "30 records, steps 1..30; L 4, E 8, G 4" "$tmp/summary"; then
  ok "summary: one line per layer"
else
  bad "summary: $(cat "$tmp/summary")"
fi
"$bin" ckpt plans "$run" --format csv >"$tmp/csv" || bad "csv"
rows=$(($(wc -l <"$tmp/csv") - 1))
[ "$rows" = $((30 * 4 * 8)) ] && head -1 "$tmp/csv" | grep -q "^step,layer,expert,load,replicas,ranks$" \
  && ok "csv: $rows rows = 30 steps x 4 layers x 8 experts" || bad "csv has $rows rows"
"$bin" ckpt plans "$run" --format csv --layer 2 --steps 10:19 --every 5 >"$tmp/csv2" || bad "csv window"
[ "$(($(wc -l <"$tmp/csv2") - 1))" = $((2 * 8)) ] && ok "csv --layer 2 --steps 10:19 --every 5: 2 steps x 8 experts" \
  || bad "csv window: $(wc -l <"$tmp/csv2") lines"
"$bin" ckpt plans "$run" --format json | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 30 and lines[0]["step"] == 1, len(lines)
assert all(len(l["loads"]) == 4 and len(l["slot_expert"][0]) == 4 for l in lines)
' && ok "json: 30 lines" || bad "json"
"$bin" ckpt plans "$run" --format table --layer 1 | grep -qE "^ +30 " && ok "table: a row per step" || bad "table"
"$bin" ckpt plans "$run" --format svg --out "$tmp/plans.svg" && python3 -c '
import sys, xml.etree.ElementTree as ET
ET.parse(sys.argv[1])' "$tmp/plans.svg" && ok "svg parses as XML" || bad "svg"
"$bin" ckpt plans "$run" --format png --out "$tmp/plans.png" && head -c 8 "$tmp/plans.png" | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a" \
  && ok "png: a PNG file" || bad "png"
fails "exists; choose another --out or add --overwrite" "$bin" ckpt plans "$run" --format png --out "$tmp/plans.png"
"$bin" ckpt plans "$run" --format png --out "$tmp/plans.png" --overwrite && ok "--overwrite replaces the picture" || bad "--overwrite"
timeout 5 "$bin" ckpt plans "$run" --follow >"$tmp/follow" 2>&1
[ $? = 124 ] && [ "$(grep -c 'following' "$tmp/follow")" -ge 2 ] && ok "--follow redraws until stopped" \
  || bad "--follow: $(head -3 "$tmp/follow")"
fails "is not a state folder" "$bin" ckpt plans "$tmp"
fails "no such folder" "$bin" ckpt plans "$tmp/nowhere"
fails "the log has layers 0..3" "$bin" ckpt plans "$run" --layer 4
fails "no record in steps 40..50" "$bin" ckpt plans "$run" --steps 40:50
fails "expected summary, table, csv, json, svg or png" "$bin" ckpt plans "$run" --format bmp
fails "needs --out FILE" "$bin" ckpt plans "$run" --format svg
mkdir -p "$tmp/empty/state" && "$tool" "$tmp/empty/state" 0 delete-manifest 1 >/dev/null 2>&1 # an empty store
fails "the placement log is empty" "$bin" ckpt plans "$tmp/empty"

# --- what-if ----------------------------------------------------------------------
"$bin" ckpt replay "$run" --policy static --policy capacity:1.0 --policy symi --policy eplb:10 \
  --policy flexmoe:10 --policy swiftmoe >"$tmp/whatif" 2>&1 || bad "what-if: $(cat "$tmp/whatif")"
[ "$(grep -cE '^(static|capacity:1.0|symi|eplb:10|flexmoe:10|swiftmoe) ' "$tmp/whatif")" = 6 ] \
  && ok "what-if: six policies side by side" || bad "what-if table: $(cat "$tmp/whatif")"
"$bin" ckpt replay "$run" --policy static --policy swiftmoe --format json | python3 -c '
import json, sys
r = {j["policy"]: j for j in map(json.loads, sys.stdin)}
assert r["swiftmoe"]["imbalance_mean"] < r["static"]["imbalance_mean"], r
assert r["static"]["dropped_fraction"] == 0 and r["static"]["steps"] == 30
' && ok "what-if json: swiftmoe less imbalanced than static on the recorded loads" || bad "what-if json"
fails "expected static, capacity" "$bin" ckpt replay "$run" --policy bogus
"$synth" "$tmp/uniform" --G 8 --E 32 --L 2 --K 4 --steps 40 --uniform >/dev/null 2>&1 || bad "plans_synth"
"$bin" ckpt replay "$tmp/uniform" >/dev/null && ok "audit of a synthetic log" || bad "audit of a synthetic log"
"$bin" ckpt replay "$tmp/uniform" --policy static --policy swiftmoe --format json | python3 -c '
import json, sys
r = {j["policy"]: j for j in map(json.loads, sys.stdin)}
for p in r.values(): assert p["imbalance_mean"] < 1.15, r  # +-10% noise only
' && ok "uniform loads: static and swiftmoe both balanced" || bad "uniform loads"

# one screen at 40 layers x 256 experts
"$synth" "$tmp/big" --G 8 --E 256 --L 40 --K 8 --steps 12 >/dev/null 2>&1 || bad "plans_synth 40 x 256"
"$bin" ckpt plans "$tmp/big" >"$tmp/big.txt" 2>&1 || bad "summary at 40 x 256: $(head -3 "$tmp/big.txt")"
lines=$(wc -l <"$tmp/big.txt")
width=$(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$tmp/big.txt")
[ "$lines" -le 60 ] && [ "$width" -le 120 ] && [ "$(grep -cE '^ +[0-9]+ ' "$tmp/big.txt")" = 40 ] \
  && ok "summary at L 40, E 256: $lines lines of at most $width characters" \
  || bad "summary at 40 x 256: $lines lines, $width wide"

# --- --init-placement -------------------------------------------------------------
mpi 4 "$bin" train "${args[@]}" --set placement.policy=static --out "$tmp/static" >"$tmp/s1.log" 2>&1 \
  || bad "uniform static run"
mpi 4 "$bin" train "${args[@]}" --set placement.policy=static --init-placement "$run" \
  --out "$tmp/static_init" >"$tmp/s2.log" 2>&1 || bad "static run from the recorded placement"
python3 - "$tmp/static/summary.json" "$tmp/static_init/summary.json" <<'PY' && ok "--init-placement: $(cat "$tmp/imb")" || bad "--init-placement not better: $(cat "$tmp/imb")"
import json, sys
a, b = (json.load(open(p))["mean_imbalance"] for p in sys.argv[1:])
open(sys.argv[1].rsplit("/", 2)[0] + "/imb", "w").write("static %.3f, from the recorded loads %.3f" % (a, b))
sys.exit(0 if b < a else 1)
PY
fails "no record of step 99" "$bin" train "${args[@]}" --set placement.policy=static --init-placement "$run:99" --out "$tmp/x1"
fails "this run has L 2" "$bin" train "${args[@]}" --set model.n_layers=2 --set placement.policy=static \
  --init-placement "$run" --out "$tmp/x2"

echo "plans: $pass passed, $fail failed"
[ $fail -eq 0 ]
