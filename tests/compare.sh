#!/usr/bin/env bash
# compare.sh SWIFTMOE: `swiftmoe compare` on a micro configuration writes the
# table, the summary and every plot for every contender; refuses a used
# --out and keeps it; --reuse keeps finished runs; `swiftmoe sim` on its
# runs' placement logs and on synthetic loads, and its errors.
set -u
bin=$(realpath "$1")
tmp=$(mktemp -d /tmp/smoe-compare.XXXXXX)
. "$(dirname "$0")/lib.sh"
keep_logs
micro=(--set model.dim=32 --set model.n_layers=1 --set model.seq_len=32 --set moe.expert_dim=32
  --set training.steps=40 --set training.eval_every=10 --set training.eval_windows=8
  --set checkpoint.interval=40)
out=$tmp/cmp
echo "== compare on a micro model (2 ranks, 40 steps) =="
if timeout 600 "$bin" compare --preset quick "${micro[@]}" --nproc 2 --out "$out" \
  --scenario paper-a100x16 --scenario h200x8 >"$tmp/compare.out" 2>"$tmp/compare.err"; then
  ok "compare finished: $(tail -1 "$tmp/compare.out")"
else
  bad "compare failed: $(tail -5 "$tmp/compare.err")"
fi
for f in table.md summary.json; do [ -s "$out/$f" ] && ok "$f written" || bad "no $f"; done
for p in loss_vs_step loss_vs_time_paper-a100x16 loss_vs_time_h200x8 dropped imbalance; do
  for x in png svg; do
    [ -s "$out/$p.$x" ] && ok "$p.$x" || bad "no $p.$x"
  done
done
python3 - "$out" <<'PY' && ok "summary.json: every contender on every scenario, the goals, the target" || bad "summary.json incomplete"
import json, sys, struct
d = sys.argv[1]
s = json.load(open(d + "/summary.json"))
names = ["swiftmoe", "static", "capacity-1.0", "capacity-1.25", "symi-1.0",
         "flexmoe-10", "flexmoe-50", "flexmoe-100", "eplb"]
assert [t["name"] for t in s["trained"]] == names[:5], s["trained"]
assert len(s["scenarios"]) == 2
for sc in s["scenarios"]:
    got = [c["name"] for c in sc["contenders"]]
    assert got == names, got
    for c in sc["contenders"]:
        assert c["step_s"] > 0 and c["expert_s"] > 0, c
        if c["name"] in ("swiftmoe", "static") or c["name"].startswith(("flexmoe", "eplb")):
            assert c["dropped_fraction_sim"] == 0, c
    assert len(sc["goals"]) == 2 or all(t["steps_to_target"] < 0 for t in s["trained"])
# the target: reached by every contender, the lowest such
assert all(t["steps_to_target"] >= 0 for t in s["trained"]), s["trained"]
table = open(d + "/table.md").read()
for n in names: assert "| " + n + " |" in table, n
# the PNGs are pictures of the size the chart draws
for p in ["loss_vs_step", "dropped", "imbalance"]:
    b = open(d + "/" + p + ".png", "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", b[16:24])
    assert (w, h) == (820, 480), (w, h)
PY
grep -q "capacity" "$out/runs/capacity-1.0/config.ini" && ok "capacity-1.0 trained with its policy" \
  || bad "capacity-1.0's config.ini"

echo "== a used --out is refused and kept; --reuse keeps finished runs =="
before=$(stat -c %Y "$out/runs/swiftmoe/metrics.jsonl")
fails "not empty" "$bin" compare --preset quick "${micro[@]}" --nproc 2 --out "$out"
[ -s "$out/table.md" ] && ok "the earlier table is still there" || bad "table.md gone"
rm -f "$out/table.md"
if timeout 300 "$bin" compare --preset quick "${micro[@]}" --nproc 2 --out "$out" --reuse \
  --scenario paper-a100x16 --target 99 >"$tmp/reuse.out" 2>&1; then
  n=$(grep -c "finished earlier" "$tmp/reuse.out")
  [ "$n" = 5 ] && ok "--reuse kept the 5 runs" || bad "--reuse kept $n runs"
else
  bad "--reuse failed: $(tail -3 "$tmp/reuse.out")"
fi
[ "$(stat -c %Y "$out/runs/swiftmoe/metrics.jsonl")" = "$before" ] && ok "the runs were not rewritten" \
  || bad "a kept run changed"
grep -q "Target validation loss: \*\*99.0000\*\* (--target)" "$out/table.md" && ok "--target 99 used" \
  || bad "--target not in the table"

echo "== bad input =="
fails "--scenario" "$bin" compare --scenario a100x99 --out "$tmp/x"
fails "--preset" "$bin" compare --preset huge --out "$tmp/x"
fails "divide" "$bin" compare --nproc 3 --out "$tmp/x"
fails "moe.top_k" "$bin" compare --set moe.top_k=99 --out "$tmp/x"
fails "unknown option" "$bin" compare --bogus 1
fails "not both" "$bin" compare --preset full --config configs/tiny.ini --out "$tmp/x"
fails "--config" "$bin" compare --config "$tmp/none.ini" --out "$tmp/x"
[ ! -e "$tmp/x" ] && ok "nothing created on bad input" || bad "$tmp/x created"

echo "== sim =="
if "$bin" sim --trace "$out/runs/swiftmoe" --format json >"$tmp/sim.json" 2>"$tmp/sim.err" &&
  python3 - "$tmp/sim.json" <<'PY'; then
import json, sys
s = json.load(open(sys.argv[1]))
assert s["scenario"] == "paper-a100x16" and s["G"] == 16 and s["steps"] == 40, s
pols = {p["policy"]: p for p in s["policies"]}
assert len(pols) == 9, list(pols)
for p in pols.values():
    parts = sum(p["parts_s"].values())
    assert abs(parts - p["step_s"]) <= 1e-5 * p["step_s"], p  # %.6g each
assert pols["static"]["dropped_fraction"] == 0 and pols["capacity:1.0"]["dropped_fraction"] > 0
PY
  ok "sim --trace: 9 policies, parts add up to the step"
else
  bad "sim --trace: $(head -c 300 "$tmp/sim.err")"
fi
"$bin" sim --synthetic zipf:1.2,drift:0.1 --ranks 64 --layers 2 --steps 50 >"$tmp/sim.txt" 2>&1 &&
  grep -q "^swiftmoe " "$tmp/sim.txt" && ok "sim --synthetic at G 64" || bad "sim --synthetic: $(tail -3 "$tmp/sim.txt")"
"$bin" sim --list-scenarios | grep -q "^h200x2048" && ok "--list-scenarios" || bad "--list-scenarios"
fails "--trace" "$bin" sim --trace "$tmp/nothing"
fails "zipf:S,drift:D" "$bin" sim --synthetic zipf:-1
fails "--ranks" "$bin" sim --ranks 0
fails "--policy" "$bin" sim --policy greedy
fails "not both" "$bin" sim --trace "$out" --synthetic zipf:1
fails "cannot open" "$bin" sim --calibration "$tmp/none.json"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
