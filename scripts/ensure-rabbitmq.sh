#!/usr/bin/env bash
# Makes sure a RabbitMQ answers on AMQP_URL's host and port. When nothing answers and the
# broker is local, installs Debian's rabbitmq-server if missing and starts it, listening on
# loopback only. Used by `make run` and `make test`.
set -euo pipefail

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport=$(python3 - "$url" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or 5672}")
PY
)
host=${hostport% *}
port=${hostport#* }

answers() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

# A broker can accept TCP and still never answer (out of file handles, see below): then
# the tests would hang, so say it instead.
handshakes() {
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        sys.exit(0 if s.recv(1) == b"\x01" else 1)  # a method frame: Connection.Start
except OSError:
    sys.exit(1)
PY
}

# The tests hold a few hundred queues at once, and a quorum queue keeps files open: on a
# broker whose file-handle budget is nearly spent (started with a low open-files limit,
# and holding other namespaces' queues, e.g. the `agentry` one `make run` leaves) they
# stall mid-run, each new queue waiting for a handle. `make test` asks for its headroom
# first (RABBITMQ_FILE_HANDLES_NEEDED); a broker this machine cannot inspect is trusted.
has_headroom() {
  needed="${RABBITMQ_FILE_HANDLES_NEEDED:-0}"
  [ "$needed" -gt 0 ] || return 0
  case "$host" in 127.0.0.1|localhost|::1) ;; *) return 0 ;; esac
  command -v rabbitmqctl >/dev/null 2>&1 || return 0
  counts=$(rabbitmqctl -q status --formatter json </dev/null 2>/dev/null | python3 -c '
import json, sys
fds = json.load(sys.stdin).get("file_descriptors") or {}
print(fds.get("total_used", 0), fds.get("total_limit", 0))' 2>/dev/null) || return 0
  used=${counts% *}
  limit=${counts#* }
  [ "$limit" -gt 0 ] || return 0
  [ $((limit - used)) -ge "$needed" ] && return 0
  echo "RabbitMQ on $host:$port has $used of its $limit file handles in use; the tests need" \
    "about $needed free (quorum queues keep files open), or they stall mid-run. Delete the" \
    "namespaces you no longer need (.venv/bin/agentry-admin --namespace NS namespace delete" \
    "--yes; 'make run' leaves 'agentry'), or restart the broker with a higher open-files" \
    "limit (rabbitmqctl stop, then make rabbitmq)." >&2
  return 1
}

if answers; then
  if handshakes; then
    has_headroom || exit 1
    exit 0
  fi
  echo "RabbitMQ on $host:$port accepts connections but does not answer the AMQP handshake" \
    "within 10 s (a local broker started with a low open-files limit does this once its" \
    "file handles run out: see 'Max open files' in /proc/<its pid>/limits). Restart it" \
    "(rabbitmqctl stop, then make rabbitmq) or fix AMQP_URL." >&2
  exit 1
fi
case "$host" in
  127.0.0.1|localhost|::1) ;;
  *) echo "RabbitMQ at $host:$port does not answer (AMQP_URL); start it or fix AMQP_URL." >&2; exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "Installing rabbitmq-server from Debian's packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own start-up may fail without systemd; we start it ourselves below.
  apt-get install -y -qq rabbitmq-server >/dev/null || dpkg --configure -a || true
fi

mkdir -p /etc/rabbitmq
if [ ! -f /etc/rabbitmq/rabbitmq.conf ]; then
  printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$port" > /etc/rabbitmq/rabbitmq.conf
fi
# RabbitMQ sizes its file-handle budget from the open-files limit it starts with (about
# 90 % of it, shared by sockets and every queue's files). Debian's wrapper starts it with
# `su rabbitmq`, whose login limits give 1024: a broker that has served a few hundred test
# queues then stops accepting connections (each new one waits for a handle that never
# frees). Systemd would give it 65536; we start it as the rabbitmq user with its soft
# limit raised as far as its hard limit allows.
echo "Starting RabbitMQ on 127.0.0.1:$port..." >&2
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port"
if [ "$(id -u)" = 0 ] && id -u rabbitmq >/dev/null 2>&1; then
  su rabbitmq -s /bin/sh -c 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec rabbitmq-server -detached'
else
  rabbitmq-server -detached
fi
for _ in $(seq 1 120); do
  if answers; then echo "RabbitMQ is up." >&2; exit 0; fi
  sleep 0.5
done
echo "RabbitMQ did not come up within 60 s; see /var/log/rabbitmq/." >&2
exit 1
