#!/usr/bin/env bash
# Memory per idle forwarded TLS connection (issue 13; a benchmark, not a
# test). SIP phones keep one TLS connection open for hours, so what each
# costs while idle bounds how many phones an appliance serves.
#
#   scripts/bench-idle-conns.sh [N]        (default N=1000)
#
# Starts the release `pbx-certd serve` (first-start self-signed
# certificate, one worker) with one `--tls-forward` to a local echo
# service, opens N TLS connections through it (Python's ssl client, TLS 1.3,
# each exchanging one line and then idle), and prints the daemon's VmRSS
# before and after and the difference per connection.
# env: PBX_CERTD (binary; default target/release/pbx-certd, built here),
#      PORT_BASE (29001: the echo service, +1 the forward).
# Processes are stopped by the PIDs this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
PORT=${PORT_BASE:-29001}
if [ -z "${PBX_CERTD:-}" ]; then
    cargo build --locked --release >&2
    PBX_CERTD=$PWD/target/release/pbx-certd
fi
ulimit -n $((N * 2 + 256))
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$PORT" <<'PY' &
import asyncio, sys
async def echo(r, w):
    while (d := await r.read(4096)):
        w.write(d); await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(echo, '127.0.0.1', int(sys.argv[1]), backlog=4096)
    async with s: await s.serve_forever()
asyncio.run(main())
PY
pids+=($!)
"$PBX_CERTD" --data-dir "$WORK/data" serve --https none --http none --workers 1 \
    --max-conns-per-ip $((N + 16)) \
    --tls-forward "127.0.0.1:$((PORT + 1))=127.0.0.1:$PORT,max-conns=$((N + 16))" \
    2>"$WORK/log" &
daemon=$!
pids+=("$daemon")
for _ in $(seq 1 100); do grep -q "ready:" "$WORK/log" && break; sleep 0.2; done
grep -q "ready:" "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
sleep 2
rss() { awk '/^VmRSS/{print $2}' "/proc/$daemon/status"; }
before=$(rss)
mkfifo "$WORK/hold"
python3 - "$((PORT + 1))" "$N" < "$WORK/hold" > "$WORK/held" <<'PY' &
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
held = []
for i in range(n):
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="pbx.bench.test")
    t.sendall(b"hello\n")
    assert t.recv(100) == b"hello\n"
    held.append(t)
print("held", len(held), held[0].version(), flush=True)
sys.stdin.read()
PY
pids+=($!)
exec 9>"$WORK/hold"
for _ in $(seq 1 300); do grep -q held "$WORK/held" && break; sleep 1; done
grep -q held "$WORK/held" || { echo "the client did not finish" >&2; exit 1; }
sleep 2
after=$(rss)
echo "$(date -u +%F) $(nproc) CPUs; $(cat "$WORK/held") idle TLS connections through one forward"
echo "VmRSS before: $before KiB, after: $after KiB, per idle connection: $(( (after - before) * 1024 / N )) B"
exec 9>&-
