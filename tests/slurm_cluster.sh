#!/usr/bin/env bash
# A one-node SLURM cluster (munged + slurmctld + slurmd) on this machine, for tests and by hand.
#
#   tests/slurm_cluster.sh start    write /etc/slurm/slurm.conf + gres.conf, start the daemons, wait until
#                                   the node is idle
#   tests/slurm_cluster.sh status   exit 0 if the cluster answers (sinfo), print the node line
#   tests/slurm_cluster.sh stop     stop every daemon this script started, by the PIDs it recorded, and
#                                   remove the config files it wrote
#
# Needs root (the config must live at /etc/slurm/slurm.conf: snakemake's SLURM job step strips SLURM_*
# variables, so SLURM_CONF pointing elsewhere would break every job) and Debian's slurmctld, slurmd,
# slurm-client and munge packages (tests/ci_slurm_setup.sh installs them). No systemd is needed.
# State, logs, PID files and the job completion log live in $SIEVE_SLURM_DIR (default /tmp/sieve-slurm);
# the job completion log ($SIEVE_SLURM_DIR/jobcomp.txt) lists every job the cluster ran.
#
# The node advertises one fake GPU (gres.conf: Name=gpu File=/dev/null) so `gpu: 1` requests of the
# SLURM profile are schedulable, and (with SlurmdParameters=config_overrides) at least 16 CPUs and 64 GB
# so the profile's real per-rule resources fit on a small machine. There is no slurmdbd: use the profile
# key `slurm-status-command: squeue`; finished jobs stay visible to squeue for MinJobAge seconds.
set -euo pipefail

DIR="${SIEVE_SLURM_DIR:-/tmp/sieve-slurm}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
GRES="$CONF_DIR/gres.conf"
MARK="# written by sieve tests/slurm_cluster.sh"
MUNGE_SOCKET=/run/munge/munge.socket.2

die() { echo "slurm_cluster.sh: $*" >&2; exit 1; }

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

read_pid() { [[ -f "$DIR/$1.pid" ]] && cat "$DIR/$1.pid" || true; }

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"; (( cpus < 16 )) && cpus=16
    mem="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"; (( mem < 64000 )) && mem=64000
    for f in "$CONF" "$GRES"; do
        if [[ -f "$f" ]] && ! grep -qF "$MARK" "$f"; then
            die "$f exists and was not written by this script; refusing to overwrite it"
        fi
    done
    mkdir -p "$CONF_DIR"
    cat > "$CONF" <<EOF
$MARK
ClusterName=sieve
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
# squeue (no slurmdbd) must still see a finished job at the executor's next status check.
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat > "$GRES" <<EOF
$MARK
Name=gpu File=/dev/null
EOF
}

start_bg() {  # name, command...: start a foreground daemon in its own session, record its PID
    local name="$1"; shift
    setsid "$@" > "$DIR/$name.out" 2>&1 < /dev/null &
    echo $! > "$DIR/$name.pid"
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "must run as root (writes $CONF)"
    for bin in munged slurmctld slurmd sinfo; do
        command -v "$bin" > /dev/null || die "$bin not found: install slurmctld slurmd slurm-client munge"
    done
    if pid_alive "$(read_pid slurmctld)"; then
        echo "cluster already running (slurmctld PID $(read_pid slurmctld))"
        return 0
    fi
    mkdir -p "$DIR/state" "$DIR/spool"
    write_conf
    if munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then
        echo "munged already running (not started by this script)"
    else
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        [[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
        chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
        chmod 0400 /etc/munge/munge.key
        start_bg munged setpriv --reuid=munge --regid=munge --clear-groups munged --foreground --socket="$MUNGE_SOCKET" \
            --pid-file=/run/munge/munged.pid --log-file=/var/log/munge/munged.log
        for _ in $(seq 50); do
            munge -n 2>/dev/null | unmunge > /dev/null 2>&1 && break
            sleep 0.1
        done
        munge -n 2>/dev/null | unmunge > /dev/null 2>&1 || die "munged did not start: $(cat "$DIR/munged.out")"
    fi
    start_bg slurmctld slurmctld -D -i
    start_bg slurmd slurmd -D
    local state=""
    for _ in $(seq 150); do
        state="$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)"
        [[ "$state" == idle ]] && break
        sleep 0.2
    done
    if [[ "$state" != idle ]]; then
        echo "--- slurmctld.log" >&2; tail -20 "$DIR/slurmctld.log" >&2 || true
        echo "--- slurmd.log" >&2; tail -20 "$DIR/slurmd.log" >&2 || true
        cmd_stop
        die "node did not become idle (state: ${state:-no answer})"
    fi
    echo "cluster up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m gres=%G')"
}

cmd_stop() {
    local name pid
    for name in slurmd slurmctld munged; do
        pid="$(read_pid "$name")"
        if pid_alive "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
            pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
            echo "stopped $name (PID $pid)"
        fi
        rm -f "$DIR/$name.pid"
    done
    for f in "$CONF" "$GRES"; do
        [[ -f "$f" ]] && grep -qF "$MARK" "$f" && rm -f "$f"
    done
    return 0
}

cmd_status() {
    sinfo -h -N -o '%N %T cpus=%c mem=%m gres=%G' || die "no cluster answers"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
