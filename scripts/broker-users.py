"""One RabbitMQ user per service of a namespace, with only its own permissions.

    broker-users.py ensure   --namespace NS [--env-file FILE]   create or update the users
    broker-users.py delete   --namespace NS                     remove them
    broker-users.py commands --namespace NS                     print the rabbitmqctl commands

The permissions come from `agentry_shared.access` (derived from topology.py). `ensure`
runs `rabbitmqctl` on this machine (as root or the rabbitmq user), keeps each user's
password in FILE (created 0600 on first use: `AMQP_URL_<SERVICE>=amqp://<ns>-<service>:
<password>@host:port/vhost`, host and vhost from AMQP_URL) and sets its permissions;
`make run` then gives each service its own AMQP_URL from that file. Passwords go to
rabbitmqctl on standard input, never on a command line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from agentry_shared.access import SERVICES, Service, permissions, topic_permissions, user_name
from agentry_shared.topology import Topology

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def env_key(service: Service) -> str:
    return "AMQP_URL_" + service.upper().replace("-", "_")


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def service_url(base: str, user: str, password: str) -> str:
    parts = urlsplit(base)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rabbitmqctl {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def existing_users() -> set[str]:
    return {line.split("\t", 1)[0] for line in rabbitmqctl("list_users", "--no-table-headers").splitlines() if line}


def ensure(namespace: str, env_file: Path, base_url: str) -> dict[str, str]:
    """Create or update the users; returns {AMQP_URL_<SERVICE>: url} (also written to env_file)."""
    topology = Topology(namespace, partitions=1)
    vhost = vhost_of(base_url)
    known = read_env(env_file)
    users = existing_users()
    urls: dict[str, str] = {}
    for service in SERVICES:
        user = user_name(namespace, service)
        previous = known.get(env_key(service))
        password = unquote(urlsplit(previous).password or "") if previous else ""
        if not password:
            password = secrets.token_urlsafe(24)
        if user in users:
            rabbitmqctl("change_password", user, stdin=password + "\n")
        else:
            rabbitmqctl("add_user", user, stdin=password + "\n")
        p = permissions(topology, service)
        rabbitmqctl("set_permissions", "-p", vhost, user, p.configure, p.write, p.read)
        tp = topic_permissions(topology, service)
        rabbitmqctl("set_topic_permissions", "-p", vhost, user, tp.exchange, tp.write, tp.read)
        urls[env_key(service)] = service_url(base_url, user, password)
    env_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(f"# broker users of namespace {namespace} (scripts/broker-users.py); secret\n")
        out.writelines(f"{key}={value}\n" for key, value in urls.items())
    return urls


def delete(namespace: str) -> None:
    users = existing_users()
    for service in SERVICES:
        user = user_name(namespace, service)
        if user in users:
            rabbitmqctl("delete_user", user)


def commands(namespace: str, vhost: str) -> str:
    topology = Topology(namespace, partitions=1)
    lines = []
    for service in SERVICES:
        user = user_name(namespace, service)
        p = permissions(topology, service)
        variable = "$" + service.upper().replace("-", "_") + "_PASSWORD"
        lines.append(f'printf "%s\\n" "{variable}" | rabbitmqctl add_user {shlex.quote(user)}')
        lines.append(
            " ".join(shlex.quote(a) for a in ("rabbitmqctl", "set_permissions", "-p", vhost, user))
            + " "
            + " ".join(shlex.quote(r) for r in (p.configure, p.write, p.read))
        )
        tp = topic_permissions(topology, service)
        lines.append(
            " ".join(shlex.quote(a) for a in ("rabbitmqctl", "set_topic_permissions", "-p", vhost, user, tp.exchange))
            + " "
            + " ".join(shlex.quote(r) for r in (tp.write, tp.read))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["ensure", "delete", "commands"])
    parser.add_argument("--namespace", default=os.environ.get("AGENTRY_NAMESPACE", "agentry"))
    parser.add_argument("--env-file", type=Path, default=Path("data/broker-users.env"))
    args = parser.parse_args(argv)
    base_url = os.environ.get("AMQP_URL", DEFAULT_URL)
    if args.action == "ensure":
        ensure(args.namespace, args.env_file, base_url)
        print(f"broker users of {args.namespace!r} ready; their AMQP_URLs are in {args.env_file}", file=sys.stderr)
    elif args.action == "delete":
        delete(args.namespace)
    else:
        print(commands(args.namespace, vhost_of(base_url)))


if __name__ == "__main__":
    main()
