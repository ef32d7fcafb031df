#!/bin/sh
# Regenerates bgp/tests/data/captures/{frr,bird,gobgp}: real BGP messages
# sent by FRR 8.4, BIRD 2 and GoBGP 3, captured with tcpdump inside lab
# network namespaces (see bgp/tests/data/captures/README.md).
# Needs root, frr, bird2, gobgpd, tcpdump. Usage: scripts/capture-vectors.sh [frr] [bird] [gobgp]
set -eu
cd "$(dirname "$0")/.."
cargo build -p flatnet-lab --bin capture-vectors
target="${CARGO_TARGET_DIR:-target}"
exec "$target/debug/capture-vectors" --out bgp/tests/data/captures "$@"
