#!/usr/bin/env bash
# REGISTER round-trip benchmark (issue 12; not run by the tests): Debian's
# Kamailio as the registrar, pbx-certd's --tls-forward in front of it, one
# REGISTER at a time on a kept connection: plain TCP straight to Kamailio vs
# TLS and WSS through the forward (benches/sip_register.rs). Prints the
# Markdown rows for README "Benchmarks".
#
#   scripts/bench-sip.sh [--n N]     (N rounds, default 200)
#
# Needs kamailio (and kamailio-websocket-modules for the WSS row). Builds
# the tool and pbx-certd with the release profile. The tool stops Kamailio
# and the daemon by the PIDs it started.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$(cargo build --locked --release --bench sip_register --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*sip_register[^"]*\)".*/\1/p' | tail -1)
[ -n "$tool" ] || { echo "bench-sip: build failed (cargo build --release --bench sip_register)" >&2; exit 1; }
exec "$tool" "$@"
