#!/usr/bin/env bash
# Installs everything flatnet's tests, lab and benchmarks need on a fresh
# Debian 12 machine. Idempotent: does nothing when all is present. Quiet:
# one progress line per step; the package manager's full output goes to a
# log file whose path is printed (FLATNET_DEPS_LOG overrides it).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: must run as root (apt-get, and the tests need network namespaces)" >&2
    exit 1
fi

PKGS=(
    iproute2 procps iptables ipset tcpdump iputils-ping util-linux
    frr bird2 gobgpd
    etcd-server protobuf-compiler
    busybox-static containernetworking-plugins podman
    iperf3 dnsmasq-base
    docker.io
)

LOG="${FLATNET_DEPS_LOG:-/tmp/flatnet-install-deps.log}"
: > "$LOG"

# step "what" cmd...: one line, the command's output to the log; on failure
# the log's tail and its path.
step() {
    local what="$1"; shift
    printf 'install-deps: %s ... ' "$what"
    local t0=$SECONDS
    if "$@" >>"$LOG" 2>&1; then
        echo "ok ($((SECONDS - t0)) s)"
    else
        echo "FAILED"
        tail -n 20 "$LOG" >&2
        echo "install-deps: full log: $LOG" >&2
        exit 1
    fi
}

missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: missing ${missing[*]} (log: $LOG)"
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
    step "apt-get update" apt-get update -q
    # With recommends: podman, as tested, needs some of them (runtime helpers).
    step "installing ${#missing[@]} packages" apt-get install -y -q "${missing[@]}"
else
    echo "install-deps: all ${#PKGS[@]} packages present"
fi

# cargo-fuzz drives the codec fuzz smoke run (on stable via RUSTC_BOOTSTRAP).
if [ "${FLATNET_SKIP_FUZZ:-0}" != 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
    step "cargo install cargo-fuzz" cargo install --locked cargo-fuzz
fi
