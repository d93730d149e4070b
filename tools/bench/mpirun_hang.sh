#!/usr/bin/env bash
# mpirun_hang.sh [N] [BUILD]: how often Open MPI's mpirun hangs when a rank is
# SIGKILLed early (while it connects in MPI_Init), and whether `swiftmoe run`
# recovers. A four-line MPI program (init, one all-reduce, 2 s sleep, finalize)
# on 4 ranks; a random rank is SIGKILLed 0.08-0.33 s after launch.
#   plain:      mpirun alone; a hang = mpirun still running 10 s later (its
#               ranks all exited); the stack of a hung one is printed once
#   supervised: under `swiftmoe run --max-restarts 1`; counts the attempts it
#               killed as a hung launcher, and supervisors that did not end
#               within 40 s (must be 0)
# Prints one line per mode; N tries each (default 150).
set -uo pipefail
n=${1:-150}
build=${2:-$(cd "$(dirname "$0")/../.." && pwd)/build}
tmp=$(mktemp -d)
trap 'pkill -9 -f "$tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cat >"$tmp/init.c" <<'C'
#include <mpi.h>
#include <unistd.h>
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int x = 0;
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  sleep(2);
  MPI_Finalize();
  return 0;
}
C
mpicc -o "$tmp/init" "$tmp/init.c" || exit 1
kill_one() {
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.08 + (r % 250) / 1000 }')"
  local p
  p=$(pgrep -f "^$tmp/init$" | shuf -n1)
  [ -n "$p" ] && kill -9 "$p"
}
# wait_gone PID SECONDS: 0 if PID ended in time
wait_gone() {
  for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}
hangs=0 shown=0
for i in $(seq "$n"); do
  mpirun --oversubscribe -np 4 "$tmp/init" >/dev/null 2>&1 &
  m=$!
  kill_one
  if ! wait_gone $m 10; then
    hangs=$((hangs + 1))
    if [ $shown -eq 0 ]; then
      shown=1
      echo "a hung mpirun (try $i): its children: $(ps -o stat= --ppid $m | tr '\n' ' ')"
      timeout 20 gdb -p $m -batch -ex bt 2>/dev/null | grep -E "^#" | head -8
    fi
    pkill -9 -P $m; kill -9 $m
  fi
  wait $m 2>/dev/null
done
echo "plain: $hangs of $n mpirun runs hung after an early SIGKILL of a rank"
recovered=0 stuck=0
for i in $(seq "$n"); do
  "$build/swiftmoe" run --max-restarts 1 --backoff 0 -- mpirun --oversubscribe -np 4 "$tmp/init" \
    >/dev/null 2>"$tmp/sup.log" &
  s=$!
  kill_one
  if ! wait_gone $s 40; then stuck=$((stuck + 1)); pkill -9 -f "$tmp/init"; kill -9 $s; fi
  wait $s 2>/dev/null
  grep -q "launcher hung in its own shutdown" "$tmp/sup.log" && recovered=$((recovered + 1))
done
echo "supervised: $recovered of $n attempts killed as a hung launcher and restarted; $stuck supervisors stuck"
