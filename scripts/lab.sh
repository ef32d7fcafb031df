#!/usr/bin/env bash
# The main job: installs what the lab needs (quietly), builds flatnet in
# release mode, brings up a topology (default: two-tier) in network
# namespaces on this machine with `flatnet-lab up`, and leaves it running:
# the summary shows sessions, routes, reachability and the policy matrix,
# and ends with how to look around and take it down.
#   sudo scripts/lab.sh [TOPOLOGY-FILE] [flatnet-lab up options...]
# FLATNET_PROFILE=debug builds a debug build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "lab.sh: must run as root (the lab creates network namespaces); try: sudo $0" >&2
    exit 1
fi

FLATNET_SKIP_FUZZ=1 scripts/install-deps.sh

profile="${FLATNET_PROFILE:-release}"
flag=(--release)
[ "$profile" = debug ] && flag=()
log="/tmp/flatnet-lab-build.log"
printf 'lab.sh: building flatnet (%s; log: %s) ... ' "$profile" "$log"
t0=$SECONDS
if cargo build "${flag[@]}" -p flatnet-agent -p flatnet-lab --bins >"$log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
else
    echo "FAILED"; tail -n 30 "$log" >&2; exit 1
fi

bin="${CARGO_TARGET_DIR:-target}/$profile"
file="lab/topologies/two-tier/two-tier.clab.yml"
if [ $# -gt 0 ] && [ -f "$1" ]; then file="$1"; shift; fi
# The tools for looking around afterwards.
ln -sf "$(realpath "$bin/flatnet-lab")" /usr/local/bin/flatnet-lab
exec "$bin/flatnet-lab" up "$file" "$@"
