#!/usr/bin/env bash
# A sweep of 100,000 seeds over SSH hosts with GNU parallel: one shard per job slot, results
# copied back, then merged locally.
#
#   deploy/gnu-parallel.sh hosts.txt
#
# hosts.txt lists one SSH host per line; each needs agentsim on its PATH. The scenario is
# copied to each host with --transferfile, the shard result is copied back with --return.
set -euo pipefail
hosts=${1:?usage: gnu-parallel.sh HOSTS_FILE}
shards=20
mkdir -p results
seq 0 $((shards - 1)) | parallel --sshloginfile "$hosts" --transferfile scenarios/support-desk.toml \
    --return "results/shard-{}-of-${shards}.json" --cleanup \
    "agentsim sweep scenarios/support-desk.toml --seeds 0..100000 --shard {}/${shards} --out results || [ \$? -eq 1 ]"
agentsim merge results
