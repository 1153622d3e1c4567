#!/usr/bin/env bash
# Makes sure the official AsyncAPI JSON Schemas (npm `@asyncapi/specs`, pinned) are in
# .cache/npm, where tests/contracts validates docs/contracts/asyncapi.yaml against them.
# Installs Debian's nodejs and npm first when npm is missing. Used by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

version=6.11.1
prefix=.cache/npm
installed="$prefix/node_modules/@asyncapi/specs/package.json"
if [ -f "$installed" ] && grep -q "\"version\": \"$version\"" "$installed"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "Installing nodejs and npm from Debian's packages (for @asyncapi/specs)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
echo "Installing @asyncapi/specs@$version into $prefix..." >&2
npm install --prefix "$prefix" --no-audit --no-fund --silent "@asyncapi/specs@$version"
