#!/usr/bin/env bash
# Makes sure Debian's Prometheus (the server and promtool) is installed, for the alert-rule
# unit tests (tests/deploy) and the dashboard/alert test against a real stack (tests/ops).
# Installs only when `promtool` is missing; never starts a server (the tests start their
# own, on loopback, and end it). Used by `make test`.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "promtool is missing; install it: sudo apt-get install -y prometheus" >&2
  exit 0  # the tests that need it say so in their skip reason
fi
echo "Installing prometheus (server and promtool) from Debian's packages..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
# Without systemd the package does not start a server; with it, it would: the tests never use it.
command -v promtool >/dev/null
