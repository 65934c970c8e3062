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
#   COMPARE=/path/to/other/plaid-vcr ROUNDS=3 bench/record.sh  # side by side: alternating
#       rounds of this build and the other, SETTLE (10) seconds apart, then the medians of each
#       build's overhead at 1 client and recordings/s per level
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LEVELS=${LEVELS:-"1 8 32"} DURATION=${DURATION:-10s}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 2; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin plaid-vcr --example bare_hyper
  BIN=./target/release/plaid-vcr
fi

if [ -n "${COMPARE:-}" ]; then
  # This machine's disk stays slow for a while after a run's writes (and its cleanup), so
  # each run starts after a sync and a pause, and the builds take turns.
  results=$(mktemp)
  trap 'rm -f "$results"' EXIT
  for round in $(seq "${ROUNDS:-3}"); do
    for side in this other; do
      bin=$BIN; [ "$side" = other ] && bin=$COMPARE
      sync; sleep "${SETTLE:-10}"
      COMPARE='' BIN="$bin" "$0" | grep -E 'direct|clients' | sed "s/^/$side round $round: /" | tee -a "$results"
    done
  done
  awk '
    function us(v) { if (v ~ /ms$/) return v * 1000; if (v ~ /us$/) return v + 0; return v * 1e6 }
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { key = $1 " " $3 }
    /direct upstream/ { direct[key] = us($9) }
    / clients:/ {
      c = $4
      rps[$1, c] = rps[$1, c] " " $6
      if (c == 1) over[$1] = over[$1] " " (us($9) - direct[key])
    }
    END {
      for (s = 1; s <= 2; s++) {
        side = s == 1 ? "this" : "other"
        printf "%-5s median overhead at 1 client: %.0f us\n", side, median(over[side])
        for (k in rps) { split(k, parts, SUBSEP); if (parts[1] == side) printf "%-5s median recordings/s at %s clients: %.0f\n", side, parts[2], median(rps[k]) }
      }
    }' "$results" | sort
  exit 0
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
