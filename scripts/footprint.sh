#!/usr/bin/env bash
# Footprint report (a benchmark, not a test): for the native release binary and
# any ARM binaries built by scripts/build-arm.sh, print
#   - the stripped binary size,
#   - the RSS of an idle `serve` holding N tenant certificates (default 1000),
#   - the store's size on disk.
# Native RSS is the process's VmRSS. ARM binaries run under qemu-user here, so
# their VmRSS includes the emulator; the in-guest number comes from
# scripts/qemu-boot.sh (a real kernel under qemu-system). Target: idle RSS
# <= 8 MiB with 1000 tenant certificates; stripped size <= 6 MiB.
#
# Usage: scripts/footprint.sh [N]
# FOOTPRINT_STORE=DIR keeps the populated store in DIR and reuses it next time.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
work="$(mktemp -d)"
# Every process this script starts is stopped by its PID (kept in $work/pids).
trap 'while read -r p; do kill "$p" 2>/dev/null || true; done < "$work/pids" 2>/dev/null; rm -rf "$work"' EXIT

command -v openssl >/dev/null || { echo "footprint.sh: needs openssl" >&2; exit 1; }
cargo build --release --locked -q
native=target/release/pbx-certd

# serve BINARY STORE [RUNNER...] -> prints the daemon's VmRSS in KiB once idle.
serve_rss() {
    local bin="$1" store="$2"; shift 2
    local log="$work/serve.log"
    "$@" "$bin" --data-dir "$store" serve --https 127.0.0.1:0 --http 127.0.0.1:0 2>"$log" &
    local pid=$!
    echo "$pid" >> "$work/pids"
    for _ in $(seq 1 300); do grep -q "ready:" "$log" && break; sleep 0.1; done
    grep -q "ready:" "$log" || { echo "daemon did not start: $(cat "$log")" >&2; kill "$pid"; return 1; }
    sleep 2 # idle
    awk '/VmRSS/ {print $2}' "/proc/$pid/status"
    kill -TERM "$pid"; wait "$pid" || true
}

store="${FOOTPRINT_STORE:-$work/store}"
if [ -d "$store" ]; then
    echo "reusing the store in $store"
else
echo "populating a store with $N tenants, each with its own domain certificate..."
ca="$work/ca"; mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Footprint Root" -addext basicConstraints=critical,CA:true \
    -keyout "$ca/root.key" -out "$ca/root.pem" 2>/dev/null
"$native" --data-dir "$store" import --cert "$ca/root.pem" >/dev/null
# Populate through a running daemon (control socket): one store open in all.
"$native" --data-dir "$store" serve --https none --http none 2>"$work/populate.log" &
pop=$!
echo "$pop" >> "$work/pids"
for _ in $(seq 1 100); do grep -q "ready:" "$work/populate.log" && break; sleep 0.1; done
for i in $(seq 1 "$N"); do
    name="pbx.t$i.example.com"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$ca/leaf.key" -out "$ca/leaf.csr" 2>/dev/null
    openssl x509 -req -in "$ca/leaf.csr" -CA "$ca/root.pem" -CAkey "$ca/root.key" -days 398 \
        -extfile <(printf "subjectAltName=DNS:%s\nbasicConstraints=CA:false" "$name") \
        -out "$ca/leaf.pem" 2>/dev/null
    "$native" --data-dir "$store" tenant add "t$i" --dns "$name" >/dev/null
    "$native" --data-dir "$store" import --cert "$ca/leaf.pem" --key "$ca/leaf.key" >/dev/null
done
kill -TERM "$pop"; wait "$pop" || true
fi
certs=$("$native" --data-dir "$store" certs --json | grep -o '"id"' | wc -l)

printf '\n%-34s %12s %14s %12s\n' "binary" "size (KiB)" "idle RSS (KiB)" "store (KiB)"
report() {
    local label="$1" bin="$2" rss="$3"
    printf '%-34s %12s %14s %12s\n' "$label" "$(( $(stat -c %s "$bin") / 1024 ))" "$rss" \
        "$(du -sk "$store" | cut -f1)"
}
report "native ($(uname -m))" "$native" "$(serve_rss "$native" "$store")"
for t in aarch64-unknown-linux-musl:qemu-aarch64 armv7-unknown-linux-musleabihf:qemu-arm; do
    triple="${t%%:*}"; runner="${t##*:}"
    bin="target/$triple/release/pbx-certd"
    [ -x "$bin" ] || { echo "$triple: not built (scripts/build-arm.sh)"; continue; }
    if command -v "$runner" >/dev/null; then
        arm_store="$work/store-$triple"; cp -a "$store" "$arm_store"
        rss=$(store="$arm_store" serve_rss "$bin" "$arm_store" "$runner" || echo "n/a")
        report "$triple (RSS incl. qemu-user)" "$bin" "$rss"
    else
        report "$triple" "$bin" "n/a"
    fi
done
echo "($certs certificates in the store; target: idle RSS <= 8192 KiB, size <= 6144 KiB)"
