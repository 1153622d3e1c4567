#!/usr/bin/env bash
# Makes sure Debian's chromium is installed, for the web page's browser tests (Playwright
# drives it through executable_path; it never downloads a browser of its own). Used by
# `make test`.
set -euo pipefail

browser="${AGENTRY_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
  exit 0
fi
if [ "$browser" != /usr/bin/chromium ]; then
  echo "AGENTRY_CHROMIUM=$browser is not an executable; install it or unset the variable." >&2
  exit 1
fi
echo "Installing chromium from Debian's packages..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium is installed." >&2
