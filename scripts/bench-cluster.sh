#!/usr/bin/env bash
# Benchmark (not a test), issue 16: the time from an import on one cluster
# node to the certificate being presented by SNI on the two others.
#
#   scripts/bench-cluster.sh [IMPORTS]        (default 50)
#
# Runs tests/cluster.rs::import_to_served_latency (ignored in the suite):
# three Debian etcd members on loopback (`--max-txn-ops 4096`, own data
# dirs), three `pbx-certd serve --store etcd+http://.../PREFIX` nodes (the
# test profile's binary, default settings), then IMPORTS imports one after
# the other with node A's CLI; for each, the clock starts when the CLI has
# reported success and stops when nodes B and C both present the new leaf
# by SNI (a rustls handshake every 2 ms). Prints median, p90, min and max.
# README "Cluster" has the figure. PROFILE=release builds optimised
# (slower to build; the daemon's watch path then runs at release speed).
set -euo pipefail
cd "$(dirname "$0")/.."
imports="${1:-50}"
[ -x /usr/bin/etcd ] || command -v etcd >/dev/null || {
    echo "bench-cluster: needs etcd (Debian: apt-get install etcd-server)" >&2
    exit 1
}
profile=()
[ "${PROFILE:-}" = release ] && profile=(--release)
PBX_CERTD_BENCH_IMPORTS="$imports" cargo test --locked "${profile[@]}" --test cluster -- \
    --ignored --exact import_to_served_latency --nocapture 2>&1 |
    grep -E "^import to served|test result|panicked" || true
