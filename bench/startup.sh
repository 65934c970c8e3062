#!/usr/bin/env bash
# Times one replay start to readiness and back: start `plaid-vcr replay` on port 0, wait for
# the first stdout line (cassette loaded, port bound), send SIGTERM, wait for exit 0 (the
# shutdown includes the session summary). With READY_OUT=FILE, appends the milliseconds from
# launch to ready to FILE.
#   bench/startup.sh CASSETTE STORE [cold]   # "cold" deletes STORE first (full parse)
# Make a large cassette with: cargo run --release --example gen_cassette -- 10000 /tmp/big
# BIN=/path/to/other/plaid-vcr times another build.
set -euo pipefail
cassette=$1 store=$2
[ "${3:-}" = cold ] && rm -rf "$store"
bin="${BIN:-$(dirname "${BASH_SOURCE[0]}")/../target/release/plaid-vcr}"
out=$(mktemp)
t0=$(date +%s%N)
"$bin" replay --cassette "$cassette" --store "$store" --listen 127.0.0.1:0 --log-level warn >"$out" &
pid=$!
for _ in $(seq 3000); do [ -s "$out" ] && break; sleep 0.002; done
[ -s "$out" ] || { kill "$pid"; rm -f "$out"; echo "startup: not ready in 6 s" >&2; exit 2; }
[ -z "${READY_OUT:-}" ] || echo $((($(date +%s%N) - t0) / 1000000)) >>"$READY_OUT"
kill -TERM "$pid"
wait "$pid"
rm -f "$out"
