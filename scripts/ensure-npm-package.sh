#!/usr/bin/env bash
# Makes sure npm package NAME at VERSION (pinned by the caller) is in .cache/npm, where
# the tests use it: `@asyncapi/specs` (tests/contracts validates docs/contracts against
# it) and `@modelcontextprotocol/server-everything` (the tool-runner's MCP tests start it
# on loopback). Installs Debian's nodejs and npm first when npm is missing. Used by
# `make test` (targets `asyncapi-spec` and `mcp-everything`).
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: ensure-npm-package.sh NAME VERSION}
version=${2:?usage: ensure-npm-package.sh NAME VERSION}
prefix=.cache/npm
installed="$prefix/node_modules/$name/package.json"
if [ -f "$installed" ] && grep -q "\"version\": \"$version\"" "$installed"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "Installing nodejs and npm from Debian's packages (for $name)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
echo "Installing $name@$version into $prefix..." >&2
npm install --prefix "$prefix" --no-audit --no-fund --silent "$name@$version"
