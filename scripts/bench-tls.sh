#!/usr/bin/env bash
# TLS handshake benchmark (issue 13; not run by the tests). Prints a Markdown
# table for README "Benchmarks".
#
# Every server gets the same N tenant certificates (ECDSA P-256, one key each,
# `t{i}.pbx.test`, chosen by SNI) and is pinned to one core with taskset; the
# project's own client (benches/tls_handshake.rs, rustls) runs on the other
# core and makes TLS 1.3 full handshakes at concurrency 32, cycling through
# every tenant name. Each presented leaf must carry the SNI sent literally in
# its SAN (else `wrong_cert`), its chain is verified against the bench CA (once
# per distinct leaf) and the CertificateVerify signature on every handshake.
# Servers are measured in interleaved rounds (order rotated each round); the key
# figure is handshakes per CPU-second the server's process tree used
# (/proc/PID/stat utime+stime), robust on a shared machine; hs per wall second,
# p50/p99 latency, idle RSS with N tenants, threads and time to ready too.
#
#   scripts/bench-tls.sh
#
# env: TENANTS (1000) ROUNDS (3) DURATION (seconds per run, 5) CONCURRENCY (32)
#      SERVERS ("rustls-ref pbx-certd pbx-certd-o3 nginx haproxy caddy"; a
#        missing nginx/haproxy/caddy is skipped; pbx-certd-w2 = `--workers 2`
#        on both cores, pbx-certd-nolog = `--handshake-log off` (what the
#        handshake diagnostics cost), EXTRA_SERVERS adds to the list)
#      RESUMED ("rustls-ref pbx-certd": servers also measured with resumed
#        TLS 1.3 handshakes; empty to skip)
#      SERVER_CPU (0) CLIENT_CPU (1) BENCH_DIR (target/bench-tls)
#      HS_ARGS (extra client arguments, e.g. --no-sig)
#      PBX_CERTD (binary; default: built here with `cargo build --release`)
#      TOOL (a prebuilt benches/tls_handshake.rs executable; default: built here)
#      CLIENT_TOOL (another build of it for the client side; default: TOOL)
#      PBX_CERTD_ARGS (extra `serve` arguments for every pbx-certd row)
#      VARIANTS ("LABEL=BINARY ...": more pbx-certd rows, other builds, e.g.
#        per-package opt-levels; each LABEL is added to SERVERS)
# Servers are stopped by the PIDs this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${TENANTS:-1000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-32}
SERVERS=${SERVERS:-"rustls-ref pbx-certd pbx-certd-o3 nginx haproxy caddy"}
SERVERS="$SERVERS ${EXTRA_SERVERS:-}"
declare -A VARIANT
for v in ${VARIANTS:-}; do
    VARIANT[${v%%=*}]=$(realpath "${v#*=}")
    SERVERS="$SERVERS ${v%%=*}"
done
RESUMED=${RESUMED-"rustls-ref pbx-certd"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WORK=${BENCH_DIR:-target/bench-tls}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
PKI=$WORK/pki
OUT=$WORK/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

log() { echo "bench-tls: $*" >&2; }

# --- build -------------------------------------------------------------
tool_path() { # cargo build args... -> path of the bench executable
    cargo build --locked "$@" --message-format=json 2>/dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="tls_handshake": print(m["executable"])'
}
if [ -z "${TOOL:-}" ]; then
    log "building the client/reference server (opt-level 3)"
    cargo build --locked --profile bench-o3 --bench tls_handshake >&2
    TOOL=$(tool_path --profile bench-o3 --bench tls_handshake)
fi
[ -x "$TOOL" ] || { log "no bench executable"; exit 1; }
if [ -z "${PBX_CERTD:-}" ]; then
    cargo build --locked --release >&2
    PBX_CERTD=$PWD/target/release/pbx-certd
fi
case " $SERVERS " in *" pbx-certd-o3 "*)
    [ -n "${VARIANT[pbx-certd-o3]:-}" ] || cargo build --locked --profile bench-o3 --bin pbx-certd >&2 ;;
esac
PBX_O3=$PWD/target/bench-o3/pbx-certd

# --- PKI and the pbx-certd store -------------------------------------------
if [ ! -s "$PKI/tenants.txt" ] || [ "$(wc -l < "$PKI/tenants.txt")" != "$N" ]; then
    rm -rf "$PKI" "$WORK/store"
    "$TOOL" gen "$PKI" "$N"
fi
TENANTS_FILE=$PKI/tenants.txt
LAST=$(tail -1 "$TENANTS_FILE")

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -f "$WORK/store/.ready" ]; then
    log "importing $N tenants into a pbx-certd store (through a running daemon)"
    rm -rf "$WORK/store"
    "$PBX_CERTD" --data-dir "$WORK/store" serve --https none --http none 2>"$WORK/populate.log" &
    pop=$!
    PIDS+=("$pop")
    for _ in $(seq 1 200); do grep -q "ready:" "$WORK/populate.log" && break; sleep 0.05; done
    c() { "$PBX_CERTD" --data-dir "$WORK/store" "$@" >/dev/null; }
    c import --cert "$PKI/ca.pem"
    while read -r t; do
        c tenant add "${t%%.*}" --dns "$t"
        c import --cert "$PKI/leaves/$t.pem" --key "$PKI/leaves/$t.key"
    done < "$TENANTS_FILE"
    kill -TERM "$pop"; wait "$pop" || true
    touch "$WORK/store/.ready"
fi

# --- servers ---------------------------------------------------------------
# start_server LABEL PORT -> appends to $OUT/servers.jsonl, sets SPID[LABEL]
declare -A SPID SPORT
port=19443
ready_ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

start_server() {
    local label=$1 run=$OUT/$1 pid t0 cpus=$SERVER_CPU
    port=$((port + 1))
    mkdir -p "$run"
    local kind=$label
    [ -n "${VARIANT[$label]:-}" ] && kind=variant
    case $kind in
        rustls-ref)
            t0=$(date +%s%N)
            taskset -c "$cpus" "$TOOL" ref-server --dir "$PKI" --addr "127.0.0.1:$port" --tickets \
                2>"$run/log" &
            pid=$! ;;
        pbx-certd|pbx-certd-o3|pbx-certd-w*|pbx-certd-nolog|variant)
            local bin=$PBX_CERTD extra=()
            [ "$label" = pbx-certd-o3 ] && bin=$PBX_O3
            [ "$kind" = variant ] && bin=${VARIANT[$label]}
            case $label in
                pbx-certd-w*) extra=(--workers "${label#pbx-certd-w}"); cpus=0-1 ;;
                pbx-certd-nolog) extra=(--handshake-log off) ;;
            esac
            rm -rf "$run/store"; cp -a "$WORK/store" "$run/store"
            t0=$(date +%s%N)
            # shellcheck disable=SC2086
            PBX_CERTD_LOG=warn taskset -c "$cpus" "$bin" --data-dir "$run/store" serve \
                --https "127.0.0.1:$port" --http none "${extra[@]}" ${PBX_CERTD_ARGS:-} 2>"$run/log" &
            pid=$! ;;
        nginx)
            command -v nginx >/dev/null || { log "nginx not installed: skipped"; return 1; }
            mkdir -p "$run/tmp"
            {
                echo "worker_processes 1; daemon off; pid $run/nginx.pid; error_log $run/error.log warn;"
                echo "events { worker_connections 4096; }"
                echo "http { access_log off; server_names_hash_max_size 16384; server_names_hash_bucket_size 128;"
                echo "  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;"
                echo "  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp; ssl_protocols TLSv1.2 TLSv1.3;"
                while read -r t; do
                    echo "  server { listen 127.0.0.1:$port ssl; server_name $t;"
                    echo "    ssl_certificate $PKI/leaves/$t.pem; ssl_certificate_key $PKI/leaves/$t.key; return 200; }"
                done < "$TENANTS_FILE"
                echo "}"
            } > "$run/nginx.conf"
            t0=$(date +%s%N)
            taskset -c "$cpus" nginx -p "$run" -e "$run/error.log" -c "$run/nginx.conf" 2>"$run/log" &
            pid=$! ;;
        haproxy)
            command -v haproxy >/dev/null || { log "haproxy not installed: skipped"; return 1; }
            mkdir -p "$run/certs"
            while read -r t; do
                cat "$PKI/leaves/$t.pem" "$PKI/leaves/$t.key" > "$run/certs/$t.pem"
                echo "$run/certs/$t.pem $t"
            done < "$TENANTS_FILE" > "$run/crt-list"
            cat > "$run/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend tls
    bind 127.0.0.1:$port ssl crt-list $run/crt-list ssl-min-ver TLSv1.2
    http-request return status 200
EOF
            t0=$(date +%s%N)
            taskset -c "$cpus" haproxy -W -f "$run/haproxy.cfg" 2>"$run/log" &
            pid=$! ;;
        caddy)
            command -v caddy >/dev/null || { log "caddy not installed: skipped"; return 1; }
            {
                printf '{\n\tadmin off\n\tauto_https off\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n'
                while read -r t; do
                    printf 'https://%s:%s {\n\tbind 127.0.0.1\n\ttls %s %s\n\trespond "ok" 200\n}\n' \
                        "$t" "$port" "$PKI/leaves/$t.pem" "$PKI/leaves/$t.key"
                done < "$TENANTS_FILE"
            } > "$run/Caddyfile"
            t0=$(date +%s%N)
            HOME=$run XDG_DATA_HOME=$run XDG_CONFIG_HOME=$run GOMAXPROCS=1 \
                taskset -c "$cpus" caddy run --config "$run/Caddyfile" --adapter caddyfile \
                >"$run/log" 2>&1 &
            pid=$! ;;
        *) log "unknown server $label"; return 1 ;;
    esac
    PIDS+=("$pid")
    if ! "$TOOL" probe --addr "127.0.0.1:$port" --sni t1.pbx.test --ca "$PKI/ca.pem" --wait 120; then
        log "$label did not serve t1.pbx.test (log: $run/log)"; return 1
    fi
    local ready; ready=$(ready_ms "$t0")
    "$TOOL" probe --addr "127.0.0.1:$port" --sni "$LAST" --ca "$PKI/ca.pem" \
        || { log "$label: wrong answer for $LAST"; return 1; }
    sleep 2 # idle
    local stat; stat=$("$TOOL" procstat "$pid")
    echo "$stat" | python3 -c "import json,sys; d=json.load(sys.stdin); d.update(label='$label', ready_ms=$ready); print(json.dumps(d))" \
        >> "$OUT/servers.jsonl"
    SPID[$label]=$pid
    SPORT[$label]=$port
    log "$label ready in ${ready} ms on port $port: $stat"
}

ACTIVE=()
for s in $SERVERS; do
    start_server "$s" && ACTIVE+=("$s") || true
done
[ ${#ACTIVE[@]} -gt 0 ] || { log "no server started"; exit 1; }

# --- rounds ------------------------------------------------------------------
RUNS=$OUT/runs.jsonl
for r in $(seq 1 "$ROUNDS"); do
    n=${#ACTIVE[@]}
    for k in $(seq 0 $((n - 1))); do
        s=${ACTIVE[$(( (k + r - 1) % n ))]}
        taskset -c "$CLIENT_CPU" "${CLIENT_TOOL:-$TOOL}" client --addr "127.0.0.1:${SPORT[$s]}" --names "$TENANTS_FILE" \
            --ca "$PKI/ca.pem" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 1 ${HS_ARGS:-} \
            --server-pid "${SPID[$s]}" --label "$s" --round "$r" | tee -a "$RUNS" >&2
        case " $RESUMED " in *" $s "*)
            taskset -c "$CLIENT_CPU" "${CLIENT_TOOL:-$TOOL}" client --addr "127.0.0.1:${SPORT[$s]}" --names "$TENANTS_FILE" \
                --ca "$PKI/ca.pem" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 1 --resume ${HS_ARGS:-} \
                --server-pid "${SPID[$s]}" --label "$s (resumed)" --round "$r" | tee -a "$RUNS" >&2 ;;
        esac
    done
done

# --- table ---------------------------------------------------------------------
{
    echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1);" \
        "$N tenants, TLS 1.3, concurrency $CONCURRENCY, $ROUNDS rounds x ${DURATION} s, server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
    echo "versions: $(nginx -v 2>&1 | head -1 || true); $(haproxy -v 2>/dev/null | head -1 || true); caddy $(caddy version 2>/dev/null | cut -d' ' -f1 || true)"
    echo
    "$TOOL" summarize "$RUNS" "$OUT/servers.jsonl" --baseline "${ACTIVE[0]}"
} | tee "$OUT/table.md"
log "raw results in $OUT"
