#!/usr/bin/env bash
# Issue 3 full-table benchmark: feeds 1,000,000 IPv4 prefixes from one eBGP
# peer to flatnet's speaker (flatnet-bgpd), BIRD 2, FRR (bgpd -n) and GoBGP in
# turn, and prints time-to-Loc-RIB and peak RSS side by side. Needs root
# (network namespaces), bird2, frr and gobgpd installed. Extra arguments go to
# the benchmark, e.g. `scripts/bench-bgp.sh --runs 3` or
# `scripts/bench-bgp.sh --prefixes 100000 --receivers flatnet,bird`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p flatnet-bgpd --bin flatnet-bgpd
cargo build --release -p flatnet-lab --bin bench-bgp-feed
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-bgp-feed" "$@"
