#!/usr/bin/env bash
# How start-up, memory and scan grow with the cassette: for N interactions (default 1,000,
# 10,000 and 50,000, made once with examples/gen_cassette.rs under $BENCH_DIR), the median of
# RUNS of: a replay start with a fresh store (every file parsed: each CI checkout) and with the
# store already built, each to ready and back (bench/startup.sh), with their peak RSS;
# `plaid-vcr scan` of the cassette; and `plaid-vcr validate` of a cassette of as many of
# Plaid's examples for every endpoint (gen_cassette --corpus): the whole spec loaded each time. "ready" is launch to the first stdout line (cassette
# loaded, port bound: tests can start); "round" adds the SIGTERM and the exit with its summary.
#   bench/scale.sh                         # N = 1000 10000 50000, 3 runs each
#   SIZES="10000" RUNS=5 bench/scale.sh
#   BIN=/path/to/other/plaid-vcr bench/scale.sh   # measure another build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-"1000 10000 50000"} RUNS=${RUNS:-3} BENCH_DIR=${BENCH_DIR:-/tmp/plaid-vcr-bench}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
cargo build --release --quiet --bin plaid-vcr --example gen_cassette
export BIN=${BIN:-$PWD/target/release/plaid-vcr}
mkdir -p "$BENCH_DIR"

# Median of "seconds peak_kib" lines: prints "seconds peak_MiB".
median() { sort -n | awk '{s[NR] = $1; m[NR] = $2} END {i = int((NR + 1) / 2); printf "%.3f %.1f", s[i], m[i] / 1024}'; }
# One timed run of a command: "seconds peak_kib" (the largest process: plaid-vcr).
timed() { /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time" "$@" >/dev/null 2>&1; cat "$BENCH_DIR/time"; }

# Median of a file of millisecond figures, in seconds.
median_ms() { sort -n "$1" | awk '{v[NR] = $1} END {printf "%.3f", v[int((NR + 1) / 2)] / 1000}'; }

printf '%8s %10s %14s %9s %10s %14s %9s %10s %11s\n' interactions "cold ready" "cold round s" "peak MiB" \
  "warm ready" "warm round s" "peak MiB" "scan s" "validate s"
for n in $SIZES; do
  cassette="$BENCH_DIR/cassette-$n" store="$BENCH_DIR/store-$n"
  [ -d "$cassette" ] || ./target/release/examples/gen_cassette "$n" "$cassette" >/dev/null
  : >"$BENCH_DIR/ready-cold"; : >"$BENCH_DIR/ready-warm"
  cold=$(for _ in $(seq "$RUNS"); do READY_OUT="$BENCH_DIR/ready-cold" timed bash bench/startup.sh "$cassette" "$store" cold; done | median)
  warm=$(for _ in $(seq "$RUNS"); do READY_OUT="$BENCH_DIR/ready-warm" timed bash bench/startup.sh "$cassette" "$store"; done | median)
  scan=$(for _ in $(seq "$RUNS"); do timed "$BIN" scan "$cassette"; done | median)
  corpus="$BENCH_DIR/corpus-$n"
  [ -d "$corpus" ] || ./target/release/examples/gen_cassette "$n" "$corpus" --corpus >/dev/null
  validate=$(for _ in $(seq "$RUNS"); do timed "$BIN" validate "$corpus"; done | median)
  printf '%8s %10s %14s %9s %10s %14s %9s %10s %11s\n' "$n" "$(median_ms "$BENCH_DIR/ready-cold")" ${cold% *} ${cold#* } \
    "$(median_ms "$BENCH_DIR/ready-warm")" ${warm% *} ${warm#* } ${scan% *} ${validate% *}
done
