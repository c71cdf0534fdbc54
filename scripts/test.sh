#!/usr/bin/env bash
# Run every test of pbx-certd on a fresh machine: installs what the tests
# need (openssl/curl as real TLS peers and key makers, chromium for the web
# admin), then runs the
# unit tests, integration tests (they drive the real binary) and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# DNS-01 tests run a real BIND9 (scripts/dns-peer.sh) and check with dig.
[ -x /usr/sbin/named ] || command -v named >/dev/null 2>&1 || need_apt+=(bind9)
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The web admin's browser test needs Debian's chromium and playwright-core.
scripts/web-test/setup.sh

# Benches are not tests: they run with `cargo bench` (see README).
cargo test --locked --lib --bins --tests "$@"
