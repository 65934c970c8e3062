#!/usr/bin/env bash
# Load test on loopback: `plaid-vcr replay` (demo cassette, default info logging to a file)
# against a bare hyper server answering the same bytes (examples/bare_hyper.rs), alternated
# ROUNDS times with wrk (bare, plaid-vcr, bare, plaid-vcr, ...). Per run: requests/s, server CPU
# per request (user+system from /proc/PID/stat over the run), p50 and p99; per round the
# plaid-vcr/bare ratios; at the end the medians and both servers' RSS. Bounded: each wrk run
# lasts DURATION; both servers are killed on exit.
#   bench/load.sh                 # defaults: 5 rounds of 10s, 32 connections, 1 wrk thread
#   ROUNDS=7 DURATION=20s CONNS=64 bench/load.sh
#   BIN=/path/to/other/plaid-vcr bench/load.sh   # measure another build
#   SESSION=tests/a bench/load.sh                    # the requests in a session (Plaid-VCR-Session)
#   COMPARE=/path/to/other/plaid-vcr bench/load.sh   # side by side: bare, this build, the other,
#                                                    # alternated each round; this/other at the end
#   ARGS="--shift-dates" COMPARE=./target/release/plaid-vcr bench/load.sh
#                                  # extra arguments for this build only (the cost of an option)
#   TODAY=2027-12-01 bench/load.sh # the Plaid-VCR-Today header on every request (no exact cache)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10s} CONNS=${CONNS:-32} THREADS=${THREADS:-1}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet --bin plaid-vcr --example bare_hyper
BIN=${BIN:-./target/release/plaid-vcr}

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

. bench/lib.sh

# shellcheck disable=SC2086 # ARGS is a list of arguments
"$BIN" replay --cassette cassettes/demo --store "$tmp/store" --listen 127.0.0.1:0 ${ARGS:-} \
  >"$tmp/vcr.out" 2>"$tmp/vcr.log" & pids+=($!)
./target/release/examples/bare_hyper >"$tmp/bare.out" & pids+=($!)
vcr="$(first_url "$tmp/vcr.out")/plaid-compatible/identity/get"
bare="$(first_url "$tmp/bare.out")/plaid-compatible/identity/get"
if [ -n "${COMPARE:-}" ]; then
  "$COMPARE" replay --cassette cassettes/demo --store "$tmp/other-store" --listen 127.0.0.1:0 \
    >"$tmp/other.out" 2>"$tmp/other.log" & pids+=($!)
  other="$(first_url "$tmp/other.out")/plaid-compatible/identity/get"
fi

# Sanity: plaid-vcr must answer the request as a hit, or we would be measuring misses.
curl -fsS -o /dev/null -X POST "$vcr" -H 'Content-Type: application/json' -H 'PLAID-CLIENT-ID: b' \
  -H 'PLAID-SECRET: b' -H 'Plaid-Version: 2020-09-14' \
  -d '{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}'

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks

# One wrk run against URL served by PID: prints "req/s cpu_us_per_request p50_ms p99_ms".
run() {
  local before after
  before=$(cpu_ticks "$2")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/identity_get.lua "$1" >"$tmp/wrk"
  after=$(cpu_ticks "$2")
  awk -v cpu=$((after - before)) -v hz="$ticks" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2} /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)}
    END {printf "%.0f %.2f %.3f %.3f\n", rps, cpu / hz * 1e6 / n, p50, p99}' "$tmp/wrk"
}

printf '%-6s %-10s %10s %12s %9s %9s\n' round server "req/s" "cpu us/req" "p50 ms" "p99 ms"
: >"$tmp/ratios"
for round in $(seq "$ROUNDS"); do
  read -r b_rps b_cpu b_p50 b_p99 <<<"$(run "$bare" "${pids[1]}")"
  # Side by side, the two builds take turns going first: whichever runs right after another
  # load measured a few percent slower here.
  if [ -n "${COMPARE:-}" ] && [ $((round % 2)) -eq 0 ]; then
    read -r o_rps o_cpu o_p50 o_p99 <<<"$(run "$other" "${pids[2]}")"
  fi
  read -r v_rps v_cpu v_p50 v_p99 <<<"$(run "$vcr" "${pids[0]}")"
  if [ -n "${COMPARE:-}" ] && [ $((round % 2)) -eq 1 ]; then
    read -r o_rps o_cpu o_p50 o_p99 <<<"$(run "$other" "${pids[2]}")"
  fi
  printf '%-6s %-10s %10s %12s %9s %9s\n' "$round" "bare hyper" "$b_rps" "$b_cpu" "$b_p50" "$b_p99"
  printf '%-6s %-10s %10s %12s %9s %9s\n' "$round" "plaid-vcr" "$v_rps" "$v_cpu" "$v_p50" "$v_p99"
  if [ -n "${COMPARE:-}" ]; then
    printf '%-6s %-10s %10s %12s %9s %9s\n' "$round" "other" "$o_rps" "$o_cpu" "$o_p50" "$o_p99"
    awk -v a="$v_rps" -v b="$o_rps" -v c="$v_cpu" -v d="$o_cpu" 'BEGIN {printf "%.3f %.3f\n", a / b, c / d}' \
      >>"$tmp/versus"
  fi
  awk -v a="$v_rps" -v b="$b_rps" -v c="$v_cpu" -v d="$b_cpu" -v p="$v_p99" -v q="$b_p99" \
    'BEGIN {printf "%.3f %.3f %.3f\n", a / b, c / d, p / q}' >>"$tmp/ratios"
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median plaid-vcr/bare: req/s $(cut -d' ' -f1 "$tmp/ratios" | median)x," \
  "cpu per request $(cut -d' ' -f2 "$tmp/ratios" | median)x, p99 $(cut -d' ' -f3 "$tmp/ratios" | median)x"
if [ -n "${COMPARE:-}" ]; then
  echo "median this/other build: req/s $(cut -d' ' -f1 "$tmp/versus" | median)x," \
    "cpu per request $(cut -d' ' -f2 "$tmp/versus" | median)x"
fi
echo "RSS after load: plaid-vcr $(ps -o rss= -p "${pids[0]}") KiB, bare hyper $(ps -o rss= -p "${pids[1]}") KiB"
