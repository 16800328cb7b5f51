#!/usr/bin/env bash
# A sweep of 100,000 seeds as a Slurm job array: 20 tasks, each runs one shard into a shared
# directory; merge when the array is done.
#
#   jobid=$(sbatch --parsable deploy/slurm-array.sh)
#   sbatch --dependency=afterany:$jobid --wrap "agentsim merge results --json > summary.json"
#
#SBATCH --job-name=agentsim-sweep
#SBATCH --array=0-19
#SBATCH --cpus-per-task=2
#SBATCH --mem=1G
#SBATCH --time=01:00:00
set -u
shards=20
agentsim sweep scenarios/support-desk.toml \
    --seeds 0..100000 \
    --shard "${SLURM_ARRAY_TASK_ID}/${shards}" \
    --jobs "${SLURM_CPUS_PER_TASK}" \
    --out results \
    --resume
status=$?
# Exit 1 means invariants failed in some seeds: a finding, not a broken task.
[ "$status" -eq 0 ] || [ "$status" -eq 1 ]
