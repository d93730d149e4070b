#!/usr/bin/env bash
# swiftmoe under a real Slurm (Debian's slurm-wlm 22.05 and munge): a
# one-node cluster started here (munged, slurmctld, slurmd; every file in a
# temp folder, the daemons killed at the end), then:
#  - `srun -n 4 --mpi=pmix swiftmoe train` trains (Open MPI through PMIx);
#  - an sbatch job sent `scancel --signal=USR1` checkpoints, says
#    "preempted at step N" and its srun exits 0;
#  - requeued (scontrol requeuehold / release) it resumes with --resume auto
#    from that checkpoint on the same task count, and, requeued again with
#    NumTasks=2, on 2 tasks: the 4-rank checkpoint resharded on load.
# Every wait is bounded and says what it waits for; the logs are kept on a
# failure.
# usage: slurm.sh path/to/swiftmoe
set -uo pipefail
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
tmp=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
for d in slurmctld slurmd munged sbatch; do
  command -v $d >/dev/null || { echo "slurm.sh: skipped: $d is not installed (slurm-wlm, munge)"; exit 77; }
done
cleanup() {
  for p in "$tmp"/slurmd.pid "$tmp"/slurmctld.pid "$tmp"/munged.pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  sleep 1
  [ $keep = 1 ] && echo "logs kept in $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
node=$(hostname -s)
mkdir -p "$tmp"/{spool,state}
dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none && chmod 400 "$tmp/munge.key"
munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --pid-file="$tmp/munged.pid" \
  --log-file="$tmp/munged.log" --seed-file="$tmp/munge.seed" || { bad "munged did not start"; exit 1; }
cat >"$tmp/slurm.conf" <<EOF
ClusterName=swiftmoe-test
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
NodeName=$node CPUs=4 Sockets=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=8000 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$tmp/slurm.conf OMP_NUM_THREADS=1
slurmctld && slurmd || { bad "the Slurm daemons did not start"; cat "$tmp"/*.log; exit 1; }
# until SECONDS WHAT CMD...: polls CMD every second, at most SECONDS
until_() {
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" && return 0; sleep 1; done
  echo "waited ${limit} s for $what: giving up"
  return 1
}
until_ 30 "the node to be idle" sh -c 'sinfo -h -o %t | grep -q idle' || { bad "node not idle: $(sinfo)"; exit 1; }

args=(--set model.dim=32 --set metrics.progress=off --set training.eval_windows=1
      --set training.threads=1)
timeout 180 srun -n 4 --mpi=pmix "$bin" train "${args[@]}" --set training.steps=3 \
  --set training.warmup_steps=1 --out "$tmp/srun" >"$tmp/srun.log" 2>&1
grep -q "done: 3 steps" "$tmp/srun.log" && [ "$(grep -c '^' "$tmp/srun/metrics.jsonl")" = 3 ] \
  && ok "srun -n 4 --mpi=pmix swiftmoe train: 3 steps" || bad "srun: $(tail -3 "$tmp/srun.log")"

# a batch job that can be preempted and requeued; srun takes the task count
# of the current allocation
cat >"$tmp/job.sh" <<EOF
#!/bin/bash
#SBATCH --requeue
#SBATCH -o $tmp/job.out
#SBATCH --open-mode=append
echo "start: \$SLURM_JOB_CPUS_PER_NODE tasks, restart \${SLURM_RESTART_COUNT:-0}"
srun --mpi=pmix -n "\$SLURM_JOB_CPUS_PER_NODE" "$bin" train ${args[*]} --set training.steps=100000 \
  --set checkpoint.interval=50 --out "$tmp/run" --resume auto
echo "srun exit \$?"
EOF
job=$(sbatch -n 4 --parsable "$tmp/job.sh") || { bad "sbatch"; exit 1; }
lines() { [ -f "$tmp/run/metrics.jsonl" ] && [ "$(grep -c '^' "$tmp/run/metrics.jsonl")" -ge "$1" ]; }
gone() { ! squeue -h -j "$job" -t R,PD,CG 2>/dev/null | grep -q .; }
count() { grep -c -- "$1" "$tmp/job.out" 2>/dev/null; }
preempt() { # the job's srun gets SIGUSR1; then the job ends
  scancel --signal=USR1 "$job" && until_ 60 "the job to end after SIGUSR1" gone
}
idle() { sinfo -h -o %t | grep -q idle; }
requeue() { # held, changed (scontrol update ARGS), released now, once the node is idle again:
  # slurmd revokes an ended job's credential until it has cleaned up, and a requeue in that
  # window is killed at once ("Job credential revoked")
  until_ 30 "the node to be idle before the requeue" idle && sleep 2 &&
    scontrol requeuehold "$job" && { [ $# = 0 ] || scontrol update JobId="$job" "$@"; } &&
    scontrol release "$job" && scontrol update JobId="$job" StartTime=now
}
# resumed STEP ARGS...: requeues (requeue ARGS) until the job says it resumed from STEP,
# again if a start is killed before it ran (at most 3 tries, 90 s each)
resumed() {
  local step=$1; shift
  for _ in 1 2 3; do
    requeue "$@" || return 1
    until_ 90 "the requeued job to resume" sh -c "grep -q 'resumed from the checkpoint of step $step' '$tmp/job.out' || ! squeue -h -j $job -t R,PD,CG | grep -q ." || return 1
    grep -q "resumed from the checkpoint of step $step" "$tmp/job.out" && return 0
    echo "the requeued job ended before it resumed (see slurmctld.log); requeued again"
  done
  return 1
}
until_ 90 "5 steps of the batch job" lines 5 || bad "the batch job did not train: $(tail -3 "$tmp/job.out")"
preempt
[ "$(count 'preempted at step')" = 1 ] && [ "$(count 'srun exit 0')" = 1 ] \
  && ok "scancel --signal=USR1: $(grep -o 'preempted at step [0-9]*' "$tmp/job.out"), srun exit 0" \
  || bad "preemption: $(tail -4 "$tmp/job.out")"
step=$(grep -o 'preempted at step [0-9]*' "$tmp/job.out" | tail -1 | grep -o '[0-9]*$')
resumed "$step" \
  && ok "requeued on 4 tasks: resumed from the checkpoint of step $step" || bad "requeue: $(tail -4 "$tmp/job.out")"
until_ 60 "a few more steps" lines $((step + 3))
preempt
step=$(grep -o 'preempted at step [0-9]*' "$tmp/job.out" | tail -1 | grep -o '[0-9]*$')
resumed "$step" NumTasks=2 NumCPUs=2 && grep -q 'start: 2 tasks' "$tmp/job.out" \
  && grep -q "resharded the checkpoint of step $step from 4 to 2 ranks" "$tmp/job.out" \
  && ok "requeued on 2 tasks: the 4-rank checkpoint of step $step resharded, resumed" \
  || bad "requeue on 2 tasks: $(tail -5 "$tmp/job.out")"
until_ 60 "a few more steps on 2 tasks" lines $((step + 3)) && ok "training goes on on 2 tasks" || bad "no steps on 2 tasks"
preempt
[ "$(count 'srun exit 0')" = 3 ] && ok "every preemption exited 0" || bad "exits: $(grep 'srun exit' "$tmp/job.out")"
scancel "$job" 2>/dev/null

echo "slurm: $pass passed, $fail failed"
[ $fail -eq 0 ]
