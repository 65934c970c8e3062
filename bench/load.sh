#!/usr/bin/env bash
# Load test on loopback: `plaid-vcr replay` (demo cassette, default info logging to a file)
# against a bare hyper server answering the same bytes, alternated ROUNDS times with wrk.
# Bounded: each wrk run lasts DURATION; both servers are killed on exit.
#   bench/load.sh                 # defaults: 3 rounds of 10s, 32 connections, 1 wrk thread
#   ROUNDS=5 DURATION=20s CONNS=64 bench/load.sh
#   BIN=/path/to/other/plaid-vcr bench/load.sh   # compare another build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s} CONNS=${CONNS:-32} THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet --bin plaid-vcr --example bare_hyper
BIN=${BIN:-./target/release/plaid-vcr}

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

. bench/lib.sh

"$BIN" replay --cassette cassettes/demo --store "$tmp/store" --listen 127.0.0.1:0 \
  >"$tmp/vcr.out" 2>"$tmp/vcr.log" & pids+=($!)
./target/release/examples/bare_hyper >"$tmp/bare.out" & pids+=($!)
vcr="$(first_url "$tmp/vcr.out")/plaid-compatible/identity/get"
bare="$(first_url "$tmp/bare.out")/plaid-compatible/identity/get"

# Sanity: plaid-vcr must answer the request as a hit, or we would be measuring misses.
curl -fsS -o /dev/null -X POST "$vcr" -H 'Content-Type: application/json' -H 'PLAID-CLIENT-ID: b' \
  -H 'PLAID-SECRET: b' -H 'Plaid-Version: 2020-09-14' \
  -d '{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}'

run() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/identity_get.lua "$1" | awk '
  /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
  END {printf "%s req/s  p50 %s  p99 %s\n", rps, p50, p99}'; }

for round in $(seq "$ROUNDS"); do
  printf 'round %s  bare hyper : %s\n' "$round" "$(run "$bare")"
  printf 'round %s  plaid-vcr  : %s\n' "$round" "$(run "$vcr")"
done
echo "plaid-vcr RSS after load: $(ps -o rss= -p "${pids[0]}") KiB; bare hyper: $(ps -o rss= -p "${pids[1]}") KiB"
