#!/usr/bin/env bash
# Makes sure the reference MCP server `@modelcontextprotocol/server-everything` (npm,
# pinned) is in .cache/npm, where the tool-runner's MCP tests start it on loopback in its
# streamable-HTTP mode. Installs Debian's nodejs and npm first when npm is missing. Used
# by `make test` (target `mcp-everything`).
set -euo pipefail
cd "$(dirname "$0")/.."

version=2026.8.31
prefix=.cache/npm
installed="$prefix/node_modules/@modelcontextprotocol/server-everything/package.json"
if [ -f "$installed" ] && grep -q "\"version\": \"$version\"" "$installed"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "Installing nodejs and npm from Debian's packages (for server-everything)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
echo "Installing @modelcontextprotocol/server-everything@$version into $prefix..." >&2
npm install --prefix "$prefix" --no-audit --no-fund --silent "@modelcontextprotocol/server-everything@$version"
