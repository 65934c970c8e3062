#!/usr/bin/env bash
# Builds plaid-vcr's packages from this checkout and installs them the way a user would, for
# the example projects (tests/integration/packages.rs runs them):
#   - the Python wheel (maturin, bindings = "bin"), linted with ruff, installed into a fresh
#     virtualenv with plaid-python, pytest and pytest-xdist;
#   - the npm packages (npm pack of npm/plaid-vcr and of the linux-x64 platform package with the
#     binary just built), type-checked with tsc, installed into a fresh project with jest and
#     the official `plaid` client.
# Nothing prebuilt is downloaded: the binary is compiled here. Everything goes under
#   ${PLAID_VCR_PACKAGES_HOME:-$HOME/.cache/plaid-vcr-packages}
# which is printed at the end (the tests look there).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
home="${PLAID_VCR_PACKAGES_HOME:-$HOME/.cache/plaid-vcr-packages}"
mkdir -p "$home"
command -v python3 >/dev/null || { echo "setup: python3 is missing" >&2; exit 2; }
command -v npm >/dev/null || { echo "setup: npm is missing (install Node.js 18 or later)" >&2; exit 2; }

# Build tools, kept between runs (they change only with build-requirements.txt).
if ! cmp -s "$here/build-requirements.txt" "$home/tools/build-requirements.txt"; then
  rm -rf "$home/tools"
  python3 -m venv "$home/tools"
  "$home/tools/bin/pip" install --quiet --disable-pip-version-check -r "$here/build-requirements.txt" >&2
  cp "$here/build-requirements.txt" "$home/tools/"
fi
"$home/tools/bin/ruff" check "$root/python" "$root/examples/pytest" >&2
"$home/tools/bin/ruff" format --check "$root/python" "$root/examples/pytest" >&2

# The wheel, and a fresh virtualenv with it, as `pip install plaid-vcr` would make.
rm -rf "$home/dist" "$home/venv"
(cd "$root" && "$home/tools/bin/maturin" build --release --quiet -o "$home/dist" >&2)
python3 -m venv "$home/venv"
"$home/venv/bin/pip" install --quiet --disable-pip-version-check "$home"/dist/plaid_vcr-*.whl \
  -r "$root/tests/clients/requirements.txt" -r "$here/requirements.txt" >&2

# The npm packages: this platform's, with the binary maturin just built, and the main one;
# packed as `npm publish` would, type-checked, and installed from the tarballs into a fresh
# project with jest and the official client (examples/jest's dependencies).
platform="$(node -p 'process.platform + "-" + process.arch')"
[ -d "$root/npm/platforms/$platform" ] || { echo "setup: no npm package for $platform" >&2; exit 2; }
rm -rf "$home/npm" && mkdir -p "$home/npm/stage"
cp -r "$root/npm/platforms/$platform" "$home/npm/stage/"
mkdir -p "$home/npm/stage/$platform/bin"
# The very binary the wheel carries (wherever cargo's target directory is).
python3 - "$home"/dist/plaid_vcr-*.whl "$home/npm/stage/$platform/bin/plaid-vcr" <<'PY'
import os, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/plaid-vcr"))
    with z.open(name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(out, 0o755)
PY
(cd "$home/npm/stage/$platform" && npm pack --silent --pack-destination "$home/npm" >/dev/null)
(cd "$root/npm/plaid-vcr" && npm pack --silent --pack-destination "$home/npm" >/dev/null)
if ! cmp -s "$here/tools-package.json" "$home/node-tools/package.json"; then
  rm -rf "$home/node-tools" && mkdir -p "$home/node-tools"
  cp "$here/tools-package.json" "$home/node-tools/package.json"
  (cd "$home/node-tools" && npm install --silent --no-audit --no-fund >&2)
fi
(cd "$root/npm/plaid-vcr" && "$home/node-tools/node_modules/.bin/tsc" -p tsconfig.json >&2)
rm -rf "$home/jest-project" && mkdir -p "$home/jest-project"
sed 's|"plaid-vcr": "0.1.0"|"plaid-vcr": "file:../npm/plaid-vcr-0.1.0.tgz", "@plaid-vcr/'"$platform"'": "file:../npm/plaid-vcr-'"$platform"'-0.1.0.tgz"|' \
  "$root/examples/jest/package.json" >"$home/jest-project/package.json"
(cd "$home/jest-project" && npm install --silent --no-audit --no-fund >&2)

echo "$home"
