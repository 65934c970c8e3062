#!/usr/bin/env bash
# Installs the official Plaid clients (npm `plaid`, PyPI `plaid-python`), pinned by
# package-lock.json and requirements.txt, into a cache outside the repository:
#   ${PLAID_VCR_CLIENTS_HOME:-$HOME/.cache/plaid-vcr-clients}/{node,venv}
# Reinstalls only when a lock file changed. The integration tests (tests/integration/clients.rs)
# find the clients there. Prints the cache directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${PLAID_VCR_CLIENTS_HOME:-$HOME/.cache/plaid-vcr-clients}"
mkdir -p "$home/node"

command -v node >/dev/null || { echo "setup: node is missing (install Node.js 18 or later)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "setup: python3 is missing" >&2; exit 2; }

if ! cmp -s "$here/package-lock.json" "$home/node/package-lock.json" || [ ! -d "$home/node/node_modules/plaid" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$home/node/"
  (cd "$home/node" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

if ! cmp -s "$here/requirements.txt" "$home/venv/requirements.txt" || [ ! -x "$home/venv/bin/python" ]; then
  rm -rf "$home/venv"
  python3 -m venv "$home/venv"
  "$home/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$home/venv/requirements.txt"
fi

echo "$home"
