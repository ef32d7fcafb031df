#!/usr/bin/env bash
# Short fuzz smoke run: every cargo-fuzz target in bgp/fuzz for
# FUZZ_SECONDS seconds each (default 10), then the DNS server's input
# property tests (agent/src/dns/fuzz_tests.rs) with DNS_FUZZ_CASES cases
# each (default 5000, about 15 s). Fails on the first crash; the
# crashing input is left in bgp/fuzz/artifacts/<target>/ (proptest prints
# the DNS one, shrunk).
# Needs cargo-fuzz (installed here if missing) and nightly features, which
# RUSTC_BOOTSTRAP=1 enables on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/../bgp/fuzz"

secs="${FUZZ_SECONDS:-10}"
target_dir="${FUZZ_TARGET_DIR:-target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

captures=../tests/data/captures

# seed_corpus TARGET DIR: one seed per captured message, in the target's input format
# (header/message/update take a leading context byte: 0x09 = 4-octet AS + extended message).
seed_corpus() {
    local t="$1" dir="$2" f i=0
    for f in "$captures"/*/*.bin; do
        [ -e "$f" ] || continue
        i=$((i + 1))
        case "$t" in
            header | message) { printf '\x09'; cat "$f"; } >"$dir/seed-$i" ;;
            update) case "$f" in *-update.bin) { printf '\x09'; tail -c +20 "$f"; } >"$dir/seed-$i" ;; esac ;;
            open) case "$f" in *-open.bin) tail -c +20 "$f" >"$dir/seed-$i" ;; esac ;;
            notification) case "$f" in *-notification.bin) tail -c +20 "$f" >"$dir/seed-$i" ;; esac ;;
            route_refresh) case "$f" in *-route-refresh.bin) tail -c +20 "$f" >"$dir/seed-$i" ;; esac ;;
        esac
    done
}

cargo fuzz build -O --target-dir "$target_dir"
for t in $(cargo fuzz list); do
    # A fresh corpus per run keeps the tree clean; it is seeded with the real
    # router captures so the short run starts from valid messages.
    corpus="$(mktemp -d)"
    seed_corpus "$t" "$corpus"
    echo "== fuzz $t (${secs}s)"
    if ! cargo fuzz run -O --target-dir "$target_dir" "$t" "$corpus" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12; then
        rm -rf "$corpus"
        echo "fuzz-smoke: target $t crashed" >&2
        exit 1
    fi
    rm -rf "$corpus"
done
echo "fuzz-smoke: all targets ran ${secs}s without a crash"

# The DNS server's input path (decode, answer, encode) on arbitrary and
# damaged queries: built as the workspace's tests are, not with cargo-fuzz
# (the agent needs no nightly instrumentation for this).
echo "== fuzz dns server input (${DNS_FUZZ_CASES:-5000} cases per property)"
(cd ../.. && PROPTEST_CASES="${DNS_FUZZ_CASES:-5000}" cargo test -q -p flatnet-agent --lib -- dns::server::fuzz)
echo "fuzz-smoke: dns server input ran without a crash"
