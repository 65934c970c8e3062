#!/usr/bin/env bash
# Record throughput on loopback: `plaid-vcr record` in front of a fast upstream
# (examples/bare_hyper.rs over plain HTTP), every request a new recording (distinct tokens),
# at several client concurrencies. Prints the upstream's own latency (one client, straight to
# it), then recordings/s, p50/p99 and timeouts per level, and whether /healthz still answers
# afterwards. The record latency overhead is p50 at 1 client minus the upstream's p50. Bounded: each wrk run lasts DURATION.
#   bench/record.sh                      # 1, 8 and 32 clients, 10 s each
#   LEVELS="1 8 32 64" DURATION=20s bench/record.sh
#   BIN=/path/to/other/plaid-vcr bench/record.sh   # compare another build
#   VCR_LEVEL=debug VCR_LOG=/tmp/vcr.log bench/record.sh  # per-batch timings in the log
#   BENCH_TMP=/dev/shm bench/record.sh   # cassette and store on tmpfs: plaid-vcr without the disk
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LEVELS=${LEVELS:-"1 8 32"} DURATION=${DURATION:-10s}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin plaid-vcr --example bare_hyper
  BIN=./target/release/plaid-vcr
fi

tmp=$(mktemp -d -p "${BENCH_TMP:-$PWD/target}")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

. bench/lib.sh

./target/release/examples/bare_hyper >"$tmp/bare.out" & pids+=($!)
upstream="$(first_url "$tmp/bare.out")"
"$BIN" record --cassette "$tmp/cassette" --store "$tmp/store" --listen 127.0.0.1:0 \
  --upstream "$upstream" --log-level ${VCR_LEVEL:-warn} >"$tmp/vcr.out" 2>"${VCR_LOG:-$tmp/vcr.log}" & pids+=($!)
vcr="$(first_url "$tmp/vcr.out")"

# The same requests straight to the upstream, one client: what a recording adds is the rest.
wrk -t1 -c1 -d"$DURATION" --latency -s bench/record_distinct.lua "$upstream/plaid-compatible/identity/get" |
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {printf "direct upstream, 1 client: p50 %s p99 %s\n", p50, p99}'
for c in $LEVELS; do
  RUN_ID="c$c" wrk -t1 -c"$c" -d"$DURATION" --timeout 5s --latency -s bench/record_distinct.lua \
    "$vcr/plaid-compatible/identity/get" | awk -v c="$c" '
    /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Socket errors/ {errs=$0}
    END {printf "%3s clients: %8s recordings/s  p50 %-8s p99 %-8s %s\n", c, rps, p50, p99, errs}'
done
if curl -fsS -m 5 -o /dev/null "$vcr/healthz"; then echo "healthz: answers"; else echo "healthz: NO ANSWER (hung)"; fi
echo "files in cassette: $(find "$tmp/cassette" -name '*.json' | wc -l)"
