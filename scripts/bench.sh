#!/usr/bin/env bash
# Benchmarks (not tests): SNI resolve at 10 000 tenant names + wildcards and a
# snapshot rebuild at 10 000 certificates. Numbers are written in README.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench snapshot
