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
