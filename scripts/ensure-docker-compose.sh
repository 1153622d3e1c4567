#!/usr/bin/env bash
# Makes sure a Compose CLI is installed (Debian's docker-compose), so that tests/deploy checks
# docker-compose.yml with `docker-compose config` as Compose itself reads it. Only the CLI:
# no container engine is needed or started. Used by `make test`.
set -euo pipefail

if command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-compose is missing; install it: sudo apt-get install -y docker-compose" >&2
  exit 0  # the test that needs it says so in its skip reason
fi
echo "Installing docker-compose from Debian's packages..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
command -v docker-compose >/dev/null
