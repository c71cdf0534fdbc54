#!/usr/bin/env bash
# acme-bench.sh -- time to one certificate against local pebble (HTTP-01),
# pbx-certd side by side with Debian's `lego`, in the same run. Not a test.
# Uses scripts/acme-peers.sh (started if needed, left running) and the
# release binary (built if missing). Prints one line per client and round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
command -v lego >/dev/null || {
  [[ $(id -u) == 0 ]] || { echo "need lego: apt-get install lego" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q lego >&2
}
[[ -x target/release/pbx-certd ]] || cargo build --release >&2
BIN=$PWD/target/release/pbx-certd
scripts/acme-peers.sh up
set -a; . target/acme-peers/env; set +a
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }

for round in $(seq "$ROUNDS"); do
  # pbx-certd: daemon start to the certificate stored and served.
  D=$WORK/pbx-$round
  "$BIN" --data-dir "$D" import --cert "$ACME_CA_FILE" --kind root >/dev/null
  "$BIN" --data-dir "$D" tenant add bench --dns "p$round.bench.$DNS_ZONE" >/dev/null
  "$BIN" --data-dir "$D" acme set --directory "$ACME_DIRECTORY_URL" --enabled true \
    --challenge http-01 >/dev/null
  t0=$(now)
  PBX_CERTD_LOG=info "$BIN" --data-dir "$D" serve --https "127.0.0.1:$ACME_TLSALPN01_PORT" \
    --http "127.0.0.1:$ACME_HTTP01_PORT" 2>"$D.log" &
  pid=$!
  until grep -q -e "issued for" -e "order for .* failed" "$D.log" 2>/dev/null; do sleep 0.02; done
  t1=$(now)
  kill "$pid"; wait "$pid" || true
  grep -q "issued for" "$D.log" || { cat "$D.log" >&2; exit 1; }
  printf 'pbx-certd round %s: %.2f s (start to certificate)\n' "$round" "$(echo "$t1 - $t0" | bc)"

  # lego: one run of `lego run` with its own HTTP-01 server on the same port.
  t0=$(now)
  LEGO_CA_CERTIFICATES=$ACME_CA_FILE lego --server "$ACME_DIRECTORY_URL" --accept-tos \
    --email bench@pbx.test --domains "l$round.bench.$DNS_ZONE" --http \
    --http.port "127.0.0.1:$ACME_HTTP01_PORT" --path "$WORK/lego-$round" run >"$WORK/lego-$round.log" 2>&1 ||
    { cat "$WORK/lego-$round.log" >&2; exit 1; }
  t1=$(now)
  printf 'lego      round %s: %.2f s (run to certificate)\n' "$round" "$(echo "$t1 - $t0" | bc)"
done
