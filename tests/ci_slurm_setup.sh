#!/usr/bin/env bash
# CI's SLURM part: install Debian's SLURM pieces and munge (about 10 s), the executor plugin, and start the
# one-node test cluster (tests/slurm_cluster.sh). Then `pytest -m slurm tests/test_slurm.py` runs the tiny
# workflow through it; `tests/slurm_cluster.sh stop` stops every daemon it started.
#   usage: tests/ci_slurm_setup.sh [PYTHON]    (PYTHON: the interpreter of the test environment)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${1:-python3}"

if [[ $EUID -ne 0 ]]; then
    echo "ci_slurm_setup.sh: must run as root (apt-get, /etc/slurm)" >&2
    exit 1
fi
if ! command -v slurmctld > /dev/null || ! command -v slurmd > /dev/null || ! command -v sbatch > /dev/null \
        || ! command -v munged > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge > /dev/null
fi
"$PYTHON" -m pip install -q "snakemake-executor-plugin-slurm==2.8.0"
bash "$HERE/slurm_cluster.sh" start
