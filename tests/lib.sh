# Shell helpers the test scripts source.

# gone DIR: waits (at most 30 s) until no process of the run whose --out is DIR
# is left. mpirun can return from an aborted job before every rank has exited
# and released its state store's lock; the next command on that store waits.
gone() {
  for _ in $(seq 300); do pgrep -f -- "--out $1( |$)" >/dev/null || return 0; sleep 0.1; done
  echo "warning: processes of $1 still running after 30 s:"
  pgrep -af -- "--out $1( |$)" | head -3
}
