#!/usr/bin/env bash
# Run every test of pbx-certd on a fresh machine: installs what the tests
# need (openssl is used by tests to make RSA/encrypted keys), then runs the
# unit tests, integration tests (they drive the real binary) and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# Benches are not tests: they run with `cargo bench` (see README).
cargo test --locked --lib --bins --tests "$@"
