#!/usr/bin/env bash
# Benchmark (not a test), issue 15: STIR/SHAKEN signatures per second through
# the daemon's persistent control socket, the daemon on one core.
#
#   scripts/bench-stir.sh [REQUESTS]          (default 200000)
#
# Builds the release binary, makes a STIR/SHAKEN certificate (TNAuthList,
# P-256) with openssl under a throw-away CA, imports it for tenant `bench`
# in a fresh data dir, starts `pbx-certd serve --workers 1` pinned to CPU 0
# (taskset: every daemon thread, the blocking pool included, shares that
# core), and drives it from CPU 1 with one connection that pipelines
# `stir-shaken-sign` requests (one JSON line each) up to 256 in flight.
# Prints requests, seconds and signatures per second; every reply must be
# an Identity header. README "Benchmarks" has the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-200000}"
command -v taskset >/dev/null || { echo "bench-stir: needs taskset (util-linux)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-stir: needs two CPUs (daemon on 0, client on 1)" >&2; exit 1; }

cargo build --locked --release --bin pbx-certd >&2
bin="$PWD/target/release/pbx-certd"
tmp=$(mktemp -d)
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

cd "$tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -subj "/CN=Bench STI CA" -days 30 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
    -subj "/CN=sti.bench.example" 2>/dev/null
# TNAuthList (RFC 8226, OID 1.3.6.1.5.5.7.1.26): SEQUENCE { [0] IA5String "1234" }.
printf 'subjectAltName=DNS:sti.bench.example\n1.3.6.1.5.5.7.1.26=DER:30:08:a0:06:16:04:31:32:33:34\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile ext.cnf -out leaf.pem 2>/dev/null
cat leaf.pem ca.pem > chain.pem
data="$tmp/data"
"$bin" --data-dir "$data" tenant add bench --dns sti.bench.example >/dev/null
"$bin" --data-dir "$data" import --cert chain.pem --key leaf.key --kind stir-shaken >/dev/null
"$bin" --data-dir "$data" system set --dns pbx.bench.example >/dev/null

taskset -c 0 "$bin" --data-dir "$data" serve --https 127.0.0.1:0 --http none --workers 1 \
    2>"$tmp/daemon.log" &
daemon=$!
for _ in $(seq 1 200); do
    grep -q "ready:" "$tmp/daemon.log" 2>/dev/null && break
    sleep 0.05
done
grep -q "ready:" "$tmp/daemon.log" || { cat "$tmp/daemon.log" >&2; exit 1; }

taskset -c 1 python3 - "$data/control.sock" "$requests" <<'EOF'
import json, socket, sys, threading, time
path, total = sys.argv[1], int(sys.argv[2])
window = 256
line = (json.dumps({"command": "stir-shaken-sign", "tenant": "bench",
                    "orig": "12025550100", "dest": ["12025550199"],
                    "attest": "A"}) + "\n").encode()
s = socket.socket(socket.AF_UNIX)
s.connect(path)
credit = threading.Semaphore(window)
def send():
    for _ in range(total):
        credit.acquire()
        s.sendall(line)
writer = threading.Thread(target=send, daemon=True)
start = time.monotonic()
writer.start()
f = s.makefile("rb")
for i in range(total):
    reply = f.readline()
    if not reply.startswith(b'{"ok":{') or b'"identity"' not in reply:
        sys.exit(f"reply {i}: {reply[:300]!r}")
    credit.release()
secs = time.monotonic() - start
print(f"{total} signatures in {secs:.2f} s: {total / secs:,.0f} per second "
      f"(daemon on one core, one persistent connection, {window} in flight)")
EOF
