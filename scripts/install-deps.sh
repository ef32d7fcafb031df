#!/usr/bin/env bash
# Installs everything flatnet's tests, lab and benchmarks need on a fresh
# Debian 12 machine. Idempotent: does nothing when all is present.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: must run as root (apt-get, and the tests need network namespaces)" >&2
    exit 1
fi

PKGS=(
    iproute2 procps iptables ipset tcpdump iputils-ping
    frr bird2 gobgpd
    etcd-server protobuf-compiler
    busybox-static containernetworking-plugins podman
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    # Keep package scripts from starting FRR/BIRD/etcd in the machine's own
    # namespace: every daemon flatnet runs lives in a lab namespace.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # With recommends: podman, as tested, needs some of them (runtime helpers).
    apt-get install -y -qq "${missing[@]}"
fi

# cargo-fuzz drives the codec fuzz smoke run (on stable via RUSTC_BOOTSTRAP).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
