#!/usr/bin/env bash
# Compiles contracts/src/*.sol into contracts/artifacts/*.json with a pinned solc-js.
# Idempotent: solc is installed from npm once into the cache dir, and the artifacts
# are byte-identical from one run to the next.
#   X402_CACHE   cache root (default: $HOME/.cache/x402-facilitator)
set -euo pipefail

SOLC_VERSION=0.8.28

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${X402_CACHE:-$HOME/.cache/x402-facilitator}"
SOLC_DIR="$CACHE/solc-$SOLC_VERSION"
SOLC_MODULE="$SOLC_DIR/node_modules/solc"

if [ ! -f "$SOLC_MODULE/soljson.js" ]; then
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.solc-$SOLC_VERSION.XXXXXX")"
  chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  echo "installing solc@$SOLC_VERSION into $SOLC_DIR" >&2
  npm install --prefix "$tmp" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "solc@$SOLC_VERSION" >&2
  # Atomic publish; if another run got there first, keep its copy.
  [ -f "$SOLC_MODULE/soljson.js" ] || rm -rf "$SOLC_DIR"
  if ! mv -T "$tmp" "$SOLC_DIR" 2>/dev/null; then
    [ -f "$SOLC_MODULE/soljson.js" ] || { echo "build.sh: could not install solc into $SOLC_DIR" >&2; exit 1; }
  fi
  trap - EXIT
  rm -rf "$tmp"
fi

SOLC_MODULE="$SOLC_MODULE" SOLC_VERSION="$SOLC_VERSION" node "$HERE/compile.mjs"
