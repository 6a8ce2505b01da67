#!/usr/bin/env bash
# Installs what the tests and benchmarks need, idempotently, into a cache outside the repo:
# anvil (npm package @foundry-rs/anvil-linux-amd64), chromium (apt), the interop suite's npm
# packages and the Python SDK.
# Source it: it exports ANVIL_BIN, CHROMIUM_BIN, X402_PYTHON. Nothing here downloads anything but
# registry packages.
set -euo pipefail

X402_ROOT=${X402_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
X402_CACHE=${X402_CACHE:-$HOME/.cache/x402-facilitator}
ANVIL_VERSION=1.7.1
mkdir -p "$X402_CACHE"

anvil_dir="$X402_CACHE/anvil-$ANVIL_VERSION"
anvil_bin="$anvil_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$anvil_bin" ]; then
  echo "provision: installing anvil $ANVIL_VERSION from npm" >&2
  tmp=$(mktemp -d "$X402_CACHE/.anvil.XXXXXX")
  npm install --silent --no-audit --no-fund --prefix "$tmp" "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >&2
  rm -rf "$anvil_dir"
  mv "$tmp" "$anvil_dir"
fi
export ANVIL_BIN="$anvil_bin"

# Debian's chromium, for the console's headless-browser tests (driven over the DevTools protocol by
# tests/console/browser.mjs, no driver package). Exports CHROMIUM_BIN.
if ! command -v chromium >/dev/null 2>&1; then
  echo "provision: installing chromium from apt" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2; then
    echo "provision: apt-get install chromium failed (run as root, or install it)" >&2
    exit 1
  fi
fi
export CHROMIUM_BIN=$(command -v chromium)

# npm packages pinned by a package-lock.json, installed once per lock content.
npm_ci() {
  local dir="$1" stamp="$1/node_modules/.lock-stamp"
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "provision: installing the npm packages of ${dir#$X402_ROOT/}" >&2
    (cd "$dir" && npm ci --silent --no-audit --no-fund >&2)
    cp "$dir/package-lock.json" "$stamp"
  fi
}
# The official SDK packages used by the interop tests.
interop="$X402_ROOT/tests/interop"
npm_ci "$interop"
# The local Solana chain (LiteSVM behind JSON-RPC) and the official @x402/svm client.
npm_ci "$X402_ROOT/tests/solana-chain"

# The official Python SDK (PyPI `x402`), pinned with everything it pulls in by
# tests/interop/python-requirements.txt, in a venv keyed by that file's hash. Exports X402_PYTHON.
py_req="$interop/python-requirements.txt"
py_venv="$X402_CACHE/python-x402-$(sha256sum "$py_req" | cut -c1-16)"
if [ ! -f "$py_venv/.complete" ]; then
  echo "provision: installing the Python x402 SDK into $py_venv" >&2
  rm -rf "$py_venv"
  if ! python3 -m venv "$py_venv" >&2; then
    rm -rf "$py_venv"
    echo "provision: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  if ! "$py_venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      -r "$py_req" >&2; then
    rm -rf "$py_venv"
    echo "provision: pip install -r $py_req failed" >&2
    exit 1
  fi
  touch "$py_venv/.complete"
fi
export X402_PYTHON="$py_venv/bin/python"
