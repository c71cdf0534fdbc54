#!/usr/bin/env bash
# acme-peers.sh up|down|env -- local ACME test peers on loopback, no systemd:
#   * BIND9 (named) authoritative for $PEERS_ZONE on 127.0.0.1:$PEERS_DNS_PORT:
#     `* A 127.0.0.1`, TSIG (hmac-sha256) key allowed to update TXT (RFC 2136)
#   * pebble (Debian's real ACME CA) on https://127.0.0.1:$PEERS_ACME_PORT/dir,
#     resolving through that BIND (-dnsserver), validating HTTP-01 on
#     $PEERS_HTTP01_PORT and TLS-ALPN-01 on $PEERS_TLSALPN01_PORT of 127.0.0.1
#     (the ports the test daemon listens on).
# `up` installs missing packages with apt-get (as root), generates pebble's own
# TLS certificate with openssl (Debian ships none), starts both, waits until
# they answer, and writes $PEERS_DIR/env (KEY=VALUE lines the tests read).
# `down` stops them by the PIDs recorded at start (never by name).
# Knobs: PEBBLE_WFE_NONCEREJECT (default 0 here), PEBBLE_AUTHZREUSE (default 0
# here), PEBBLE_CERT_VALIDITY (seconds; pebble's default is 5 years), PEERS_*.
# More instances side by side: PEERS_INSTANCE=NAME keeps one in
# target/acme-peers-NAME (its own BIND, zone, TSIG key and pebble; give it
# other PEERS_*_PORT values), e.g. tests/acme_fault.rs runs pebble with 50 %
# bad nonces there while tests/acme.rs uses the default one. `down` without
# PEERS_INSTANCE stops the default instance and every named one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS_INSTANCE=${PEERS_INSTANCE:-}
PEERS_DIR=${PEERS_DIR:-$ROOT/target/acme-peers${PEERS_INSTANCE:+-$PEERS_INSTANCE}}
PEERS_DNS_PORT=${PEERS_DNS_PORT:-18053}
PEERS_ACME_PORT=${PEERS_ACME_PORT:-18443}
PEERS_MGMT_PORT=${PEERS_MGMT_PORT:-18444}
PEERS_HTTP01_PORT=${PEERS_HTTP01_PORT:-18080}
PEERS_TLSALPN01_PORT=${PEERS_TLSALPN01_PORT:-18081}
PEERS_ZONE=${PEERS_ZONE:-pbx.test}
PEERS_TSIG_NAME=${PEERS_TSIG_NAME:-pbx-certd-test.}
export PEBBLE_VA_NOSLEEP=1
export PEBBLE_WFE_NONCEREJECT=${PEBBLE_WFE_NONCEREJECT:-0}
# 0: every order validates (deterministic tests); tests set 100 to test reuse.
export PEBBLE_AUTHZREUSE=${PEBBLE_AUTHZREUSE:-0}

ETC=$PEERS_DIR/etc
RUN=$PEERS_DIR/run
log() { printf '[acme-peers] %s\n' "$*" >&2; }
die() { printf '[acme-peers] ERROR: %s\n' "$*" >&2; exit 1; }

# alive NAME BINARY: the recorded PID runs BINARY
alive() {
  local pf=$RUN/$1.pid pid
  [[ -s $pf ]] || return 1
  pid=$(<"$pf")
  [[ -d /proc/$pid ]] || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(readlink -f "$(command -v "$2")")" ]]
}

stop() {
  local name=$1 bin=$2 pid
  [[ -s $RUN/$name.pid ]] || return 0
  pid=$(<"$RUN/$name.pid")
  if alive "$name" "$bin"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
}

wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timeout waiting for $what (logs in $RUN)"
    sleep 0.1
  done
}

install_missing() {
  local need=()
  command -v pebble >/dev/null || need+=(pebble)
  command -v named >/dev/null || need+=(bind9)
  command -v tsig-keygen >/dev/null || need+=(bind9-utils)
  command -v dig >/dev/null || need+=(bind9-dnsutils)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  ((${#need[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}: apt-get install ${need[*]} (as root)"
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; }
}

up() {
  install_missing
  mkdir -p "$ETC" "$RUN/named"
  # pebble's own HTTPS certificate (the directory's TLS), made once.
  if [[ ! -s $ETC/ca.pem || ! -s $ETC/pebble.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -keyout "$ETC/ca.key" -out "$ETC/ca.pem" -subj "/CN=pbx-certd test peers CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$ETC/pebble.key" -out "$ETC/pebble.csr" -subj "/CN=localhost" 2>/dev/null
    openssl x509 -req -in "$ETC/pebble.csr" -CA "$ETC/ca.pem" -CAkey "$ETC/ca.key" -CAcreateserial \
      -days 825 -out "$ETC/pebble.pem" -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
      "subjectAltName=DNS:localhost,IP:127.0.0.1") 2>/dev/null
  fi
  [[ -s $ETC/tsig.key ]] || tsig-keygen -a hmac-sha256 "$PEERS_TSIG_NAME" >"$ETC/tsig.key"
  local secret
  secret=$(sed -n 's/.*secret "\(.*\)";.*/\1/p' "$ETC/tsig.key")

  if ! alive named named; then
    # A fresh zone each start (BIND keeps dynamic updates in a journal).
    rm -f "$RUN/named/"*
    cat >"$RUN/named/zone" <<EOF
\$TTL 60
@       IN SOA  ns1.$PEERS_ZONE. hostmaster.$PEERS_ZONE. ( 1 60 60 3600 30 )
        IN NS   ns1.$PEERS_ZONE.
ns1     IN A    127.0.0.1
@       IN A    127.0.0.1
*       IN A    127.0.0.1
EOF
    cat >"$ETC/named.conf" <<EOF
include "$ETC/tsig.key";
options {
    directory "$RUN/named";
    pid-file "$RUN/named/named.pid";
    session-keyfile "$RUN/named/session.key";
    listen-on port $PEERS_DNS_PORT { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    notify no;
    dnssec-validation no;
};
controls { };
zone "$PEERS_ZONE" { type primary; file "$RUN/named/zone"; update-policy { grant $PEERS_TSIG_NAME zonesub TXT; }; };
EOF
    named-checkconf -z "$ETC/named.conf" >/dev/null || die "named-checkconf failed"
    setsid named -g -n 1 -c "$ETC/named.conf" >"$RUN/named.log" 2>&1 </dev/null &
    echo $! >"$RUN/named.pid"
    log "started named (pid $!)"
  fi
  wait_for 20 named bash -c "dig +time=1 +tries=1 @127.0.0.1 -p $PEERS_DNS_PORT x.$PEERS_ZONE A +short | grep -q 127.0.0.1"

  if ! alive pebble pebble; then
    local validity=""
    [[ -n ${PEBBLE_CERT_VALIDITY:-} ]] && validity=",
    \"certificateValidityPeriod\": $PEBBLE_CERT_VALIDITY"
    cat >"$ETC/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEERS_ACME_PORT",
    "managementListenAddress": "127.0.0.1:$PEERS_MGMT_PORT",
    "certificate": "$ETC/pebble.pem",
    "privateKey": "$ETC/pebble.key",
    "httpPort": $PEERS_HTTP01_PORT,
    "tlsPort": $PEERS_TLSALPN01_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false$validity
  }
}
EOF
    # Go bool flag: -strict=false (a separate "false" would mean true).
    setsid pebble -config "$ETC/pebble.json" -dnsserver "127.0.0.1:$PEERS_DNS_PORT" -strict=false \
      >"$RUN/pebble.log" 2>&1 </dev/null &
    echo $! >"$RUN/pebble.pid"
    log "started pebble (pid $!, nonce reject ${PEBBLE_WFE_NONCEREJECT}%, authz reuse ${PEBBLE_AUTHZREUSE}%)"
  fi
  wait_for 30 pebble curl -sf --cacert "$ETC/ca.pem" "https://127.0.0.1:$PEERS_ACME_PORT/dir"

  cat >"$PEERS_DIR/env.tmp" <<EOF
ACME_DIRECTORY_URL=https://127.0.0.1:$PEERS_ACME_PORT/dir
ACME_CA_FILE=$ETC/ca.pem
PEBBLE_MGMT_URL=https://127.0.0.1:$PEERS_MGMT_PORT
PEBBLE_PID=$(<"$RUN/pebble.pid")
PEBBLE_NONCEREJECT=$PEBBLE_WFE_NONCEREJECT
PEBBLE_AUTHZREUSE=$PEBBLE_AUTHZREUSE
ACME_HTTP01_PORT=$PEERS_HTTP01_PORT
ACME_TLSALPN01_PORT=$PEERS_TLSALPN01_PORT
DNS_SERVER=127.0.0.1:$PEERS_DNS_PORT
DNS_ZONE=$PEERS_ZONE
TSIG_KEY_NAME=$PEERS_TSIG_NAME
TSIG_ALGORITHM=hmac-sha256
TSIG_SECRET=$secret
EOF
  mv "$PEERS_DIR/env.tmp" "$PEERS_DIR/env"
  log "up; environment in $PEERS_DIR/env"
}

down() {
  stop pebble pebble
  stop named named
  rm -f "$PEERS_DIR/env"
  if [[ -z $PEERS_INSTANCE ]]; then
    local d
    for d in "$ROOT"/target/acme-peers-*/; do
      [[ -d $d ]] || continue
      d=${d%/}
      PEERS_DIR= PEERS_INSTANCE=${d##*/acme-peers-} "$0" down
    done
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  restart-pebble) stop pebble pebble; up ;;
  env) cat "$PEERS_DIR/env" ;;
  *) echo "usage: $0 up|down|restart-pebble|env" >&2; exit 2 ;;
esac
