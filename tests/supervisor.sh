#!/bin/sh
# supervisor.sh SWIFTMOE: `swiftmoe run` restarts, gives up, forwards signals
# and reports, checked with small sh commands in place of a training job.
# The commands are sh -c scripts in single quotes: they expand $0 themselves.
# shellcheck disable=SC2016
set -eu
SM=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

fail() {
  echo "FAIL: $*"
  echo "--- stderr of the supervisor:"
  cat "$T/err" 2>/dev/null || true
  exit 1
}

# run EXPECTED_RC ARGS...: swiftmoe run ARGS, at most 10 s, stderr in $T/err.
run() {
  want=$1
  shift
  rc=0
  timeout 10 "$SM" run "$@" 2>"$T/err" || rc=$?
  [ "$rc" -eq "$want" ] || fail "swiftmoe run $*: exit $rc, expected $want"
}

# count PATTERN: lines of $T/err matching PATTERN.
count() { grep -c -e "$1" "$T/err" || true; }

# wait_for FILE: up to 5 s.
wait_for() {
  i=0
  while [ ! -e "$1" ]; do
    i=$((i + 1))
    [ "$i" -le 50 ] || fail "$1 never appeared"
    sleep 0.1
  done
}

# A command that logs its arguments to $T/args.N and fails its first two runs.
cat >"$T/flaky.sh" <<'EOF'
#!/bin/sh
log=$1
shift
echo "$*" >>"$log"
[ "$(wc -l <"$log")" -ge 3 ]
EOF

echo "1. fails twice, then succeeds: two restarts, with --resume auto"
run 0 --backoff 0 -- sh "$T/flaky.sh" "$T/args.1" --out "$T/nowhere"
[ "$(count '^swiftmoe run: attempt .* restart')" -eq 2 ] || fail "expected two restart lines"
[ "$(sed -n 1p "$T/args.1")" = "--out $T/nowhere" ] || fail "attempt 1 args"
[ "$(sed -n 2p "$T/args.1")" = "--out $T/nowhere --resume auto" ] || fail "attempt 2 args"
[ "$(sed -n 3p "$T/args.1")" = "--out $T/nowhere --resume auto" ] || fail "attempt 3 args"
grep -q "no step in $T/nowhere/metrics.jsonl" "$T/err" || fail "a missing metrics.jsonl has no step"
grep -q '^swiftmoe run: 3 attempts, 2 restarts; last: exit status 0; exit 0$' "$T/err" ||
  fail "summary line"

echo "1b. an existing --resume gets the value auto"
run 0 --backoff 0 -- sh "$T/flaky.sh" "$T/args.1b" --resume step5 --resume=x
[ "$(sed -n 1p "$T/args.1b")" = "--resume step5 --resume=x" ] || fail "attempt 1 args"
[ "$(sed -n 2p "$T/args.1b")" = "--resume step5 --resume=auto" ] || fail "attempt 2: --resume="
run 0 --backoff 0 -- sh "$T/flaky.sh" "$T/args.1c" --resume step5 --out y
[ "$(sed -n 2p "$T/args.1c")" = "--resume auto --out y" ] || fail "attempt 2: --resume VALUE"

echo "2. always fails, --max-restarts 2: exit 1 after 3 attempts"
run 1 --max-restarts 2 --backoff=0 -- sh -c 'echo x >>"$0"; exit 1' "$T/count.2"
[ "$(wc -l <"$T/count.2")" -eq 3 ] || fail "expected 3 attempts, got $(wc -l <"$T/count.2")"
grep -q 'attempt 3 failed (exit status 1).*restarts exhausted' "$T/err" || fail "no exhausted line"

echo "3. exit status 2 (bad usage/config): no restart, exit 2"
run 2 --backoff 0 -- sh -c 'echo x >>"$0"; exit 2' "$T/count.3"
[ "$(wc -l <"$T/count.3")" -eq 1 ] || fail "restarted after exit status 2"
grep -q 'not restarting' "$T/err" || fail "no message for exit status 2"

echo "4. SIGTERM is forwarded; the command exits 0; no restart"
"$SM" run --backoff 0 -- sh -c 'trap "echo TERM >\"$0/got\"; exit 0" TERM; echo x >>"$0/count"
  touch "$0/up"; sleep 30 & wait $!' "$T" 2>"$T/err" &
sup=$!
(sleep 10 && kill -9 "$sup") >/dev/null 2>&1 &
dog=$!
wait_for "$T/up"
kill -TERM "$sup"
rc=0
wait "$sup" || rc=$?
kill "$dog" 2>/dev/null || true
[ "$rc" -eq 0 ] || fail "supervisor exit $rc after SIGTERM, expected 0"
[ -e "$T/got" ] || fail "the command did not get SIGTERM"
[ "$(wc -l <"$T/count")" -eq 1 ] || fail "restarted after a forwarded SIGTERM"
grep -q 'forwarding SIGTERM' "$T/err" || fail "no forwarding line"

echo "4b. a second SIGTERM forwards SIGKILL"
rm -f "$T/up"
"$SM" run --backoff 0 -- sh -c 'trap "touch \"$0/term\"" TERM; touch "$0/up"
  while :; do sleep 0.2; done' "$T" 2>"$T/err" &
sup=$!
(sleep 10 && kill -9 "$sup") >/dev/null 2>&1 &
dog=$!
wait_for "$T/up"
kill -TERM "$sup"
wait_for "$T/term"
kill -TERM "$sup"
rc=0
wait "$sup" || rc=$?
kill "$dog" 2>/dev/null || true
[ "$rc" -eq 137 ] || fail "supervisor exit $rc after two SIGTERMs, expected 137 (SIGKILL)"
grep -q 'forwarding SIGKILL' "$T/err" || fail "no SIGKILL forwarding line"

echo "4c. the signal reaches the command's process group: a wrapper's child gets it too"
rm -f "$T/up"
"$SM" run --backoff 0 -- sh -c 'sh -c "trap \"touch \\\"$0/inner\\\"; exit 0\" TERM
  touch \"$0/up\"; sleep 30 & wait" "$0"' "$T" 2>"$T/err" &
sup=$!
(sleep 10 && kill -9 "$sup") >/dev/null 2>&1 &
dog=$!
wait_for "$T/up"
kill -TERM "$sup"
rc=0
wait "$sup" || rc=$?
kill "$dog" 2>/dev/null || true
wait_for "$T/inner"
[ "$rc" -eq 143 ] || fail "supervisor exit $rc, expected 143 (the wrapper killed by SIGTERM)"

echo "5. a command killed by SIGKILL is restarted (default backoff 1 s)"
run 0 -- sh -c 'echo x >>"$0"; [ "$(wc -l <"$0")" -ge 2 ] || kill -9 $$' "$T/count.5"
[ "$(wc -l <"$T/count.5")" -eq 2 ] || fail "expected 2 attempts"
grep -q 'attempt 1 failed (killed by SIGKILL).*restart 1 of 3 in 1.0 s' "$T/err" ||
  fail "restart line for SIGKILL"

echo "6. --out DIR: the restart line names the last step of DIR/metrics.jsonl"
mkdir "$T/run6"
printf '%s\n' '{"step": 1, "loss": 5.0}' '{"step": 7, "loss": 4.2}' '{"event": "checkpoint"}' \
  >"$T/run6/metrics.jsonl"
printf '{"step": 8, "lo' >>"$T/run6/metrics.jsonl" # a line cut by the crash
run 1 --max-restarts 1 --backoff 0 -- sh -c 'exit 3' x --out "$T/run6"
grep -q "attempt 1 failed (exit status 3).*last step 7 in $T/run6/metrics.jsonl; restart 1" \
  "$T/err" || fail "restart line without the last step"
run 1 --max-restarts 0 -- sh -c 'exit 3' x "--out=$T/run6"
grep -q "last step 7" "$T/err" || fail "--out=DIR"

echo "6b. --stall-timeout: a job whose metrics.jsonl stops growing is stopped and restarted"
mkdir "$T/run6b"
# attempt 1 logs a step, then hangs (SIGTERM ends it); attempt 2 logs and exits 0
run 0 --backoff 0 --stall-timeout 1 -- sh -c 'echo "{\"step\": $(wc -l <"$0/count" 2>/dev/null || echo 0)}" \
  >>"$0/metrics.jsonl"; echo x >>"$0/count"; [ "$(wc -l <"$0/count")" -ge 2 ] || sleep 30' \
  "$T/run6b" --out "$T/run6b"
[ "$(wc -l <"$T/run6b/count")" -eq 2 ] || fail "expected 2 attempts after a stall"
grep -q "attempt 1 made no progress for 1 s: $T/run6b/metrics.jsonl gained no line (last step 0); stopping it" \
  "$T/err" || fail "no stall line"
grep -q "attempt 1 failed (killed by SIGTERM, stalled).*restart 1 of 3" "$T/err" ||
  fail "the stalled attempt was not restarted as a failure"
echo "6c. a stalled job that ignores SIGTERM gets SIGKILL (15 s later)"
rc=0
timeout 40 "$SM" run --max-restarts 0 --stall-timeout 1 -- sh -c 'trap "" TERM; sleep 60 & wait $!; wait $!' \
  --out "$T/run6c" 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] || fail "exit $rc after a stall with no restart left, expected 1"
grep -q "still running 15 s after SIGTERM: SIGKILL" "$T/err" || fail "no SIGKILL after the grace period"
grep -q "attempt 1 failed (killed by SIGKILL, stalled)" "$T/err" || fail "SIGKILL not reported"

echo "6d. an mpirun left with only exited ranks (zombies) is killed and the job restarted"
# (Open MPI 4.1.4's mpirun can hang so in its own shutdown after a rank is
# SIGKILLed in MPI_Init.) The fake launcher forks two "ranks" that exit at once
# and never reaps them; its second attempt exits 0.
mkdir -p "$T/bin6d"
cat >"$T/bin6d/mpirun" <<'EOF'
#!/usr/bin/env python3
import os, sys, time
log = sys.argv[1]
open(log, "a").write("x\n")
if sum(1 for _ in open(log)) >= 2:
    sys.exit(0)
for _ in range(2):
    if os.fork() == 0:
        os._exit(0)
time.sleep(60)
EOF
chmod +x "$T/bin6d/mpirun"
rc=0
timeout 40 "$SM" run --backoff 0 -- "$T/bin6d/mpirun" "$T/count.6d" 2>"$T/err" || rc=$?
[ "$rc" -eq 0 ] || fail "exit $rc after a hung launcher, expected 0 (restarted)"
[ "$(wc -l <"$T/count.6d")" -eq 2 ] || fail "expected 2 attempts"
grep -q "mpirun (pid [0-9]*) is still running 10 s after all its 2 ranks exited" "$T/err" ||
  fail "no line for the hung launcher"
grep -q "attempt 1 failed (killed by SIGKILL, launcher hung)" "$T/err" || fail "restart line"

echo "7. usage errors exit 2 and name the problem"
run 2 sh -c true
grep -q "unexpected argument 'sh'" "$T/err" || fail "no '--'"
run 2 --bogus -- true
grep -q "unknown option '--bogus'" "$T/err" || fail "unknown option"
run 2 --max-restarts abc -- true
grep -q -- "--max-restarts abc" "$T/err" || fail "non-integer --max-restarts"
run 2 --backoff 1.5 -- true
grep -q -- "--backoff 1.5" "$T/err" || fail "non-integer --backoff"
run 2 --stall-timeout -1 -- true
grep -q -- "--stall-timeout -1: expected an integer in 0.." "$T/err" || fail "negative --stall-timeout"
run 2 --max-restarts
grep -q -- "--max-restarts needs a value" "$T/err" || fail "missing value"
run 2 --
run 2 -- "$T/no-such-command"
grep -q "cannot run" "$T/err" || fail "missing command"
rc=0
"$SM" run --help >"$T/help" || rc=$?
[ "$rc" -eq 0 ] || fail "--help: exit $rc"
grep -q -- "--max-restarts N" "$T/help" || fail "--help lists no --max-restarts"

echo "supervisor: all cases passed"
