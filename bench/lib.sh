# Shared by the bench scripts (sourced, not run).

# Waits (max 10 s) for the first stdout line of a server started with its stdout in $1, and
# prints the URL in it.
first_url() {
  for _ in $(seq 100); do
    if [ -s "$1" ]; then grep -o 'http://[0-9.:]*' "$1" | head -1; return; fi
    sleep 0.1
  done
  echo "bench: server did not start" >&2; exit 2
}
