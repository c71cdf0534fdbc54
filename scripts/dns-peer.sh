#!/usr/bin/env bash
# dns-peer.sh up|down -- a real BIND9 (Debian `bind9`) on loopback for the
# DNS-01 tests: authoritative for $DNS_PEER_ZONES, accepting RFC 2136 updates
# of TXT records signed with TSIG (RFC 8945) by either of two keys
# (hmac-sha256 and hmac-sha512), `update-policy { grant KEY zonesub TXT; }`.
#
#   DNS_PEER_DIR   state directory (default target/dns-peer); one peer per dir
#   DNS_PEER_ADDR  address to listen on (default 127.0.0.1; named binds only
#                  addresses configured on an interface); the zones' NS host
#                  ns1, apex and `*` have this address
#   DNS_PEER_PORT  UDP+TCP port (default 8053)
#   DNS_PEER_ZONES zones (default "example.test pbx.test")
#
# `up` recreates the zones on every start (BIND will not reload a dynamic zone
# on SIGHUP, and leftovers of an earlier run must not leak into a test), waits
# until BIND answers, and prints KEY=VALUE lines (also in $DNS_PEER_DIR/env).
# `down` stops it by the PID it recorded, never by name. Installs bind9 and
# bind9-dnsutils with apt-get when missing.
set -euo pipefail

DIR=${DNS_PEER_DIR:-$PWD/target/dns-peer}
PORT=${DNS_PEER_PORT:-8053}
ADDR=${DNS_PEER_ADDR:-127.0.0.1}
ZONES=${DNS_PEER_ZONES:-"example.test pbx.test"}
PIDFILE=$DIR/named.pid

log() { printf '[dns-peer] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

named_bin() { command -v named || echo /usr/sbin/named; }

is_ours() { # PID -> 0 when it is a live named
    [[ -d /proc/$1 ]] && [[ "$(readlink "/proc/$1/exe" 2>/dev/null)" == "$(readlink -f "$(named_bin)")" ]]
}

down() {
    [[ -s $PIDFILE ]] || return 0
    local pid
    pid=$(<"$PIDFILE")
    if is_ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.05; done
        if [[ -d /proc/$pid ]]; then
            log "named $pid ignored TERM; KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
}

install_if_missing() {
    local need=()
    [[ -x $(named_bin) ]] || need+=(bind9)
    command -v dig >/dev/null || need+=(bind9-dnsutils)
    command -v tsig-keygen >/dev/null || [[ -x /usr/sbin/tsig-keygen ]] || need+=(bind9)
    [[ ${#need[@]} -eq 0 ]] && return 0
    local sudo=""
    [[ $(id -u) == 0 ]] || sudo=sudo
    log "installing ${need[*]}"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
}

up() {
    install_if_missing
    export PATH=$PATH:/usr/sbin
    down
    mkdir -p "$DIR/zones"
    local k256 k512 zones_conf=""
    k256=$(tsig-keygen -a hmac-sha256 update-sha256.)
    k512=$(tsig-keygen -a hmac-sha512 update-sha512.)
    printf '%s\n%s\n' "$k256" "$k512" >"$DIR/keys.conf"
    for z in $ZONES; do
        rm -f "$DIR/zones/$z.zone" "$DIR/zones/$z.zone.jnl"
        cat >"$DIR/zones/$z.zone" <<ZONE
\$TTL 60
@       IN SOA  ns1.$z. hostmaster.$z. ( 1 60 60 3600 30 )
        IN NS   ns1.$z.
ns1     IN A    $ADDR
@       IN A    $ADDR
*       IN A    $ADDR
ZONE
        zones_conf+="zone \"$z\" { type primary; file \"$DIR/zones/$z.zone\"; update-policy { grant update-sha256. zonesub TXT; grant update-sha512. zonesub TXT; }; };"$'\n'
    done
    cat >"$DIR/named.conf" <<CONF
include "$DIR/keys.conf";
options {
    directory "$DIR/zones";
    pid-file none;
    session-keyfile "$DIR/session.key";
    managed-keys-directory "$DIR/zones";
    listen-on port $PORT { $ADDR; };
    listen-on-v6 { none; };
    recursion no;
    allow-transfer { none; };
    notify no;
    dnssec-validation no;
};
controls { };
$zones_conf
CONF
    named-checkconf -z "$DIR/named.conf" >/dev/null || die "named-checkconf failed"
    setsid "$(named_bin)" -g -n 1 -c "$DIR/named.conf" >"$DIR/named.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local first=${ZONES%% *}
    for _ in $(seq 200); do
        if dig +time=1 +tries=1 @"$ADDR" -p "$PORT" "$first" SOA +short 2>/dev/null | grep -q ns1; then
            break
        fi
        is_ours "$(<"$PIDFILE")" || { cat "$DIR/named.log" >&2; die "named exited"; }
        sleep 0.1
    done
    dig +time=1 +tries=1 @"$ADDR" -p "$PORT" "$first" SOA +short | grep -q ns1 \
        || { cat "$DIR/named.log" >&2; down; die "named does not answer"; }
    secret() { sed -n "/key \"$1\"/,/};/s/.*secret \"\(.*\)\";.*/\1/p" "$DIR/keys.conf"; }
    {
        echo "DNS_SERVER=$ADDR:$PORT"
        echo "DNS_ZONES=$ZONES"
        echo "TSIG256_NAME=update-sha256."
        echo "TSIG256_SECRET=$(secret update-sha256.)"
        echo "TSIG512_NAME=update-sha512."
        echo "TSIG512_SECRET=$(secret update-sha512.)"
        echo "NAMED_PID=$(<"$PIDFILE")"
    } >"$DIR/env"
    cat "$DIR/env"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
