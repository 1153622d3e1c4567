#!/usr/bin/env bash
# The tool-runner's sandbox needs bubblewrap, the system Python (/usr/bin/python3) and
# libseccomp2 (its seccomp filter is built with it at start-up, through pyseccomp).
# Installs what is missing from Debian's packages; used by `make run` and `make test`.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/bin/python3 ] || missing+=(python3)
ldconfig -p 2>/dev/null | grep -q "libseccomp\.so\.2 " || missing+=(libseccomp2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} from Debian's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
