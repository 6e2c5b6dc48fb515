#!/usr/bin/env bash
# Optional part: Slurm and munge from Debian, for the sweep tests (tests/integration/test_sweep_slurm.py starts a
# throwaway cluster from them: munged, slurmctld and three slurmd in multiple-slurmd mode). Idempotent; starts nothing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Slurm (slurm-wlm, munge) for the sweep tests" >&2
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi
