#!/usr/bin/env bash
# Run every test of pbx-certd on a fresh machine: installs what the tests
# need (openssl/curl as real TLS peers and key makers, chromium for the web
# admin, pebble + bind9 as ACME peers, zig and qemu for the ARM targets),
# then runs
#   1. the native suite: unit tests and integration tests (they drive the
#      real binary),
#   2. a libFuzzer smoke run of each fuzz target (scripts/fuzz.sh smoke),
#   3. the same suite for aarch64 and armv7 (musl) under qemu-user
#      (scripts/test-qemu.sh),
#   4. the appliance boot tests: each release binary in a Debian kernel under
#      qemu-system (scripts/qemu-boot.sh aarch64|armv7).
#
#   scripts/test.sh                    all of it (CI runs this)
#   scripts/test.sh --native [ARGS]    step 1 only; ARGS go to `cargo test`
#
# Skips: a test whose peer or tool is missing (pebble/BIND, Chromium/node)
# skips only through tests/common/skip.rs, which lists it in
# target/skipped-tests.txt; this script prints that list at its end. It
# installs and starts every peer, so it sets PBX_CERTD_REQUIRE_PEERS=1: a
# missing peer then FAILS the test instead (CI never passes a skip
# silently; the list stays empty). PBX_CERTD_REQUIRE_PEERS=0 turns that off.
set -euo pipefail
cd "$(dirname "$0")/.."
export PBX_CERTD_REQUIRE_PEERS="${PBX_CERTD_REQUIRE_PEERS:-1}"
skipped="target/skipped-tests.txt"
mkdir -p target
rm -f "$skipped"
print_skipped() {
    if [ -s "$skipped" ]; then
        echo "test.sh: $(wc -l <"$skipped") skipped test(s) ($skipped):" >&2
        cat "$skipped" >&2
    else
        echo "test.sh: no test skipped" >&2
    fi
}
native_only=false
if [ "${1:-}" = --native ]; then native_only=true; shift; fi

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# libFuzzer (scripts/fuzz.sh, through libfuzzer-sys) is C++.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# DNS-01 tests run a real BIND9 (scripts/dns-peer.sh) and check with dig.
[ -x /usr/sbin/named ] || command -v named >/dev/null 2>&1 || need_apt+=(bind9)
command -v dig >/dev/null 2>&1 || need_apt+=(bind9-dnsutils)
# --tls-connect's trunk (tests/tls_connect_kamailio.rs): Kamailio with its
# tls module, requiring a client certificate.
[ -x /usr/sbin/kamailio ] || need_apt+=(kamailio)
ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || need_apt+=(kamailio-tls-modules)
# tests/sip_kamailio.rs: Debian's Kamailio as the registrar behind a forward;
# tests/sip_wss.rs: the same with its xhttp + websocket modules (WSS).
ls /usr/lib/*/kamailio/modules/websocket.so >/dev/null 2>&1 || need_apt+=(kamailio-websocket-modules)
# tests/forward_front.rs reads the forward's keepalive timers with `ss`.
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
# STIR/SHAKEN peers (tests/stir_peers.rs): Debian's secsipidx, and Kamailio
# with its secsipid module (verifying an INVITE's Identity header).
command -v secsipidx >/dev/null 2>&1 || need_apt+=(secsipidx)
ls /usr/lib/*/kamailio/modules/secsipid.so >/dev/null 2>&1 || need_apt+=(kamailio-secsipid-modules)
# SIPp (Debian sip-tester) as the SIP server's side of --tls-connect
# (tests/tls_connect_kamailio.rs).
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
# baresip as a SIP phone through a forward (tests/sip_kamailio.rs).
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
# The clustered store (tests/cluster.rs, tests/store_trait.rs): Debian's
# etcd members on loopback, started by the tests.
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# The web admin's browser test needs Debian's chromium and playwright-core.
scripts/web-test/setup.sh

# The ACME tests (tests/acme.rs) start Debian's pebble and BIND9 on loopback
# themselves through scripts/acme-peers.sh (installed with apt when missing);
# stop them, by PID, when the tests are done.
trap 'scripts/acme-peers.sh down; print_skipped' EXIT
scripts/acme-peers.sh up

# Benches are not tests: they run with `cargo bench` (see README).
cargo test --locked --lib --bins --tests "$@"
$native_only && exit 0

scripts/fuzz.sh smoke            # libFuzzer smoke run of each fuzz target (README "Fuzzing")

scripts/test-qemu.sh all
scripts/build-arm.sh all         # release binaries (sizes printed) for the boot tests
scripts/qemu-boot.sh aarch64
scripts/qemu-boot.sh armv7
