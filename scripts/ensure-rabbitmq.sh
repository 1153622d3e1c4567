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

if answers; then
  exit 0
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
echo "Starting RabbitMQ on 127.0.0.1:$port..." >&2
RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port" \
  rabbitmq-server -detached
for _ in $(seq 1 120); do
  if answers; then echo "RabbitMQ is up." >&2; exit 0; fi
  sleep 0.5
done
echo "RabbitMQ did not come up within 60 s; see /var/log/rabbitmq/." >&2
exit 1
