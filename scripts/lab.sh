#!/usr/bin/env bash
# The main job: builds flatnet, then brings up a lab in network namespaces on
# this machine — two FRR ToRs, two hosts running flatnetd with containers added
# through the real flatnet-cni plugin and flatnetd's embedded BGP speaker
# advertising each host's blocks — shows sessions, routes and container reachability, and
# removes everything. Extra arguments go to flatnet-lab (e.g. --hold, --containers 3).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "lab.sh: must run as root (the lab creates network namespaces); try: sudo $0" >&2
    exit 1
fi

scripts/install-deps.sh
cargo build -p flatnet-agent -p flatnet-lab --bins
exec "${CARGO_TARGET_DIR:-target}/debug/flatnet-lab" "$@"
