#!/usr/bin/env bash
# Run the whole test suite for the ARM appliance targets under qemu-user.
#
#   scripts/test-qemu.sh [aarch64|armv7|all]    (default: all)
#
# The test binaries and the pbx-certd binary they start are built for the
# target by scripts/build-arm.sh (zig, musl, static) in the `emulated`
# profile (Cargo.toml), and cargo runs each test binary through the runner
# set in .cargo/config.toml (qemu-aarch64 / qemu-arm). The daemon and CLI
# processes that tests spawn are ARM binaries too: the kernel hands them to
# qemu through binfmt_misc (Debian `qemu-user-binfmt`), which this script
# checks before it starts.
#
# Environment given to the tests:
#   PBX_CERTD_EMULATED=qemu-<arch>   a test that cannot run under emulation
#                                    says why and skips only when this is set
#   PBX_WEB_TEST_TIMEOUT_MS          the browser test's page timeout (the
#                                    emulated daemon hashes passwords ~20x slower)
#   PBX_CERTD_REQUIRE_PEERS=1        (default; 0 turns it off) a test whose peer
#                                    is missing fails instead of skipping
#                                    (tests/common/skip.rs). The emulated suite
#                                    runs every test, peers included: the
#                                    browser tools come from web-test/setup.sh
#                                    below, the ACME tests start pebble and
#                                    BIND (native, on loopback) themselves.
#                                    Skips, when allowed, are listed in
#                                    target/skipped-tests.txt (printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
export PBX_CERTD_REQUIRE_PEERS="${PBX_CERTD_REQUIRE_PEERS:-1}"

which_arch="${1:-all}"
case "$which_arch" in
    aarch64) arches=(aarch64) ;;
    armv7) arches=(armv7) ;;
    all) arches=(aarch64 armv7) ;;
    *) echo "usage: scripts/test-qemu.sh [aarch64|armv7|all]" >&2; exit 2 ;;
esac
shift || true

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
need=()
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    || need+=(qemu-user-binfmt)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/web-test/setup.sh

# binfmt_misc must hand ARM executables to qemu, or every test that starts
# the daemon fails with "Exec format error".
for a in "${arches[@]}"; do
    q=$([ "$a" = armv7 ] && echo qemu-arm || echo qemu-aarch64)
    entry="/proc/sys/fs/binfmt_misc/$q"
    if [ ! -e "$entry" ] || ! grep -qx enabled "$entry"; then
        [ -e /proc/sys/fs/binfmt_misc/register ] \
            || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
        $SUDO update-binfmts --enable "$q" >/dev/null 2>&1 || true
        # No binfmt-support or systemd-binfmt (a container, a fresh CI
        # machine): register qemu-user-binfmt's own entry by hand.
        conf="/usr/lib/binfmt.d/$q.conf"
        if [ ! -e "$entry" ] && [ -f "$conf" ]; then
            grep -v '^#' "$conf" | $SUDO tee /proc/sys/fs/binfmt_misc/register >/dev/null || true
        fi
    fi
    if [ ! -e "$entry" ] || ! grep -qx enabled "$entry"; then
        echo "test-qemu: binfmt_misc has no enabled $q entry; the tests start ARM" \
             "binaries as child processes and need it (install qemu-user-binfmt)" >&2
        exit 1
    fi
done

# Native-only test binaries (README "What runs where"): peer-heavy
# end-to-end tests against x86-64 Debian daemons that this script does not
# emulate. Every other tests/*.rs runs; this list is the only exclusion.
#   sip_kamailio          Kamailio as the registrar behind a forward (PROXY
#                         header); the header itself is tested emulated by
#                         forward_front.
#   tls_connect_kamailio  --tls-connect to a Kamailio TLS trunk; the same
#                         paths run emulated in tls_connect (openssl trunk).
#   sip_wss               a WSS phone registering with Kamailio's websocket
#                         module through a forward with alpn=http/1.1; the
#                         forward's ALPN runs emulated in forward_settings.
#   stir_peers            secsipidx, PyJWT and Kamailio's secsipid module
#                         checking our STIR/SHAKEN headers; the same signing
#                         and verification run emulated in stir_shaken.
#   cluster               three etcd members and three daemons on one
#                         store; the etcd backend's contract runs emulated
#                         in store_trait (one member).
native_only=(sip_kamailio tls_connect_kamailio sip_wss stir_peers cluster cluster_acme)

# Extra arguments select tests instead of the whole suite, e.g.
#   scripts/test-qemu.sh armv7 --test web_admin
select=(--lib --bins)
for t in tests/*.rs; do
    name=$(basename "$t" .rs)
    case " ${native_only[*]} " in
        *" $name "*) echo "test-qemu: leaving out $name (native only, see native_only)" >&2 ;;
        *) select+=(--test "$name") ;;
    esac
done
[ $# -gt 0 ] && select=("$@")
for a in "${arches[@]}"; do
    echo "test-qemu: $a" >&2
    PBX_CERTD_EMULATED="qemu-$a" PBX_WEB_TEST_TIMEOUT_MS=120000 CARGO_SUBCMD=test \
        scripts/build-arm.sh "$a" --profile emulated "${select[@]}"
done
if [ -s target/skipped-tests.txt ]; then
    echo "test-qemu: skipped tests so far (target/skipped-tests.txt):" >&2
    cat target/skipped-tests.txt >&2
fi
