# Shell helpers the test scripts source.

# holds DIR: whether any process has a file under DIR open (its fds in /proc).
holds() {
  local f
  for f in /proc/[0-9]*/fd/*; do
    case "$(readlink "$f" 2>/dev/null)" in "$1"/*) return 0 ;; esac
  done
  return 1
}

# gone DIR: waits (at most 30 s) until no process of the run whose --out is DIR
# is left and nothing holds a file under DIR open. mpirun can return from an
# aborted job before every rank has exited and released its state store's
# lock, and an exiting rank drops its command line (so pgrep no longer sees
# it) before it closes its files; the next command on that store waits.
gone() {
  for _ in $(seq 300); do
    pgrep -f -- "--out $1( |$)" >/dev/null || holds "$1" || return 0
    sleep 0.1
  done
  echo "warning: processes of $1 still running after 30 s:"
  pgrep -af -- "--out $1( |$)" | head -3
}

# keep_logs: at exit, the script's $tmp is removed, or kept (and named) when
# a check failed.
keep_logs() { trap '[ $keep = 1 ] && echo "logs kept in $tmp" || rm -rf "$tmp"' EXIT; }

# mpi N ARGS...: ARGS as an N-rank job (Open MPI as root, ranks may share
# cores, one thread each), killed after 300 s.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi() { local n=$1; shift; timeout 300 mpirun --oversubscribe --bind-to none -np "$n" "$@"; }

# The checks of a test script: ok/bad MESSAGE count a passed or failed one
# (bad also sets keep=1, so the script keeps its temp folder); fails WANT
# CMD... passes when CMD exits 1..127 with one line on stderr naming WANT
# (the script's $tmp holds its out and err).
pass=0
fail=0
keep=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); keep=1; }
fails() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -q -- "$want" "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ]; then
    ok "refused: $(cat "$tmp/err")"
  else
    bad "expected one line naming '$want', got rc $rc: $(head -c 300 "$tmp/err")"
  fi
}

# same REF RUN: steps 1..10's losses and the final weights (float64
# safetensors) within 1e-9 of the reference's; prints both differences.
same() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def losses(d):
    return {j["step"]: j["loss"] for j in map(json.loads, open(d + "/metrics.jsonl"))}
def tensors(d):
    b = open(d + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, t in h.items():
        if k == "__metadata__": continue
        lo, hi = t["data_offsets"]
        out[k] = struct.unpack("<%dd" % ((hi - lo) // 8), b[8 + n + lo:8 + n + hi])
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == sorted(b) == list(range(1, 11)), (sorted(a), sorted(b))
dl = max(abs(a[s] - b[s]) for s in a)
ta, tb = tensors(sys.argv[1]), tensors(sys.argv[2])
assert ta.keys() == tb.keys()
dw = max(abs(x - y) for k in ta for x, y in zip(ta[k], tb[k]))
print("losses within %.1e, weights within %.1e" % (dl, dw))
sys.exit(0 if dl <= 1e-9 and dw <= 1e-9 else 1)
PY
}
