"""One RabbitMQ user per service of a namespace, with only its own permissions.

    broker-users.py ensure      --namespace NS [--env-file FILE]  create or update the users (rabbitmqctl)
    broker-users.py delete      --namespace NS                    remove them
    broker-users.py commands    --namespace NS                    print the rabbitmqctl commands
    broker-users.py permissions --namespace NS [--out FILE]       the definitions file of the permissions
    broker-users.py compose     --namespace NS [--dir DIR]        users and URLs for docker-compose.yml
    broker-users.py k8s-secret  --namespace NS [--out FILE]       the same as a Kubernetes Secret

The permissions come from `agentry_shared.access` (derived from topology.py). `ensure`
runs `rabbitmqctl` on this machine (as root or the rabbitmq user), keeps each user's
password in FILE (created 0600 on first use: `AMQP_URL_<SERVICE>=amqp://<ns>-<service>:
<password>@host:port/vhost`, host and vhost from AMQP_URL) and sets its permissions;
`make run` then gives each service its own AMQP_URL from that file. Passwords go to
rabbitmqctl on standard input, never on a command line.

The other three write RabbitMQ definitions (docs/deploy.md, "Broker users"): `permissions`
the committed, secret-free file of permissions (`make broker-permissions` rewrites
compose/ and k8s/base copies; a test fails when they differ from access.py); `compose`
and `k8s-secret` the secret part, made at deploy time and never committed: random
passwords (kept when DIR already has them), the users with salted SHA-256 password
hashes only, and each service's AMQP_URL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from agentry_shared.access import SERVICES, Service, definitions, permissions, topic_permissions, user_name
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
        out.write(f"AGENTRY_NAMESPACE={namespace}\n")  # run_all.py uses them for this namespace only
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


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def users_definitions(passwords: dict[str, str], vhost: str, admin: str | None = None) -> dict[str, list[Any]]:
    """The users (password hashes only; the services' permissions are in the committed
    file), and for a broker of our own (compose) its vhost and an administrator."""

    def user(name: str) -> dict[str, object]:
        return {
            "name": name,
            "password_hash": password_hash(passwords[name]),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"] if name == admin else [],
        }

    document: dict[str, list[Any]] = {"users": [user(name) for name in passwords]}
    if admin is not None:
        document["vhosts"] = [{"name": vhost}]
        document["permissions"] = [{"user": admin, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]
    return document


def new_or_kept(known: str | None) -> str:
    password = unquote(urlsplit(known).password or "") if known else ""
    return password or secrets.token_urlsafe(24)


def write_secret(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.chmod(path, mode)


def compose(namespace: str, folder: Path, host: str = "rabbitmq:5672") -> None:
    """For docker-compose.yml: FOLDER/<service>.env (`AMQP_URL=` with its own user, 0600),
    FOLDER/admin.env (the management UI's administrator), FOLDER/definitions.json (users
    as password hashes, the permissions of access.py) and FOLDER/rabbitmq.conf (loads it at
    boot); those two 0644, for the broker's own user. Passwords already there are kept."""
    admin = f"{namespace}-admin"
    passwords: dict[str, str] = {}
    for name in (admin, *(user_name(namespace, s) for s in SERVICES)):
        service = name.removeprefix(namespace + "-")
        passwords[name] = new_or_kept(read_env(folder / f"{service}.env").get("AMQP_URL"))
    for name, password in passwords.items():
        service = name.removeprefix(namespace + "-")
        header = f"# broker user of {service} (scripts/broker-users.py compose); secret\n"
        write_secret(folder / f"{service}.env", f"{header}AMQP_URL={service_url(f'amqp://{host}/', name, password)}\n")
    document = users_definitions(passwords, "/", admin=admin)
    granted = definitions(Topology(namespace, partitions=1), "/")
    document["permissions"] += granted["permissions"]
    document["topic_permissions"] = granted["topic_permissions"]
    write_secret(folder / "definitions.json", json.dumps(document, indent=2) + "\n", mode=0o644)
    # With definitions loaded at boot the broker makes no default user: the admin above.
    write_secret(folder / "rabbitmq.conf", "load_definitions = /etc/rabbitmq/definitions.json\n", mode=0o644)


def k8s_secret(namespace: str, host: str, vhost: str, management_url: str) -> str:
    """The Secret `agentry-broker-users`: `AMQP_URL_<SERVICE>` (each Deployment takes its
    own), `users.json` and `RABBITMQ_MANAGEMENT_URL` (the import Job's). New random
    passwords on every run: apply, let the Job import them, restart the Deployments."""
    path = "/" if vhost == "/" else "/" + quote(vhost, safe="")
    passwords = {user_name(namespace, s): secrets.token_urlsafe(24) for s in SERVICES}
    data = {
        env_key(s): service_url(f"amqp://{host}{path}", user_name(namespace, s), new)
        for s, new in zip(SERVICES, passwords.values(), strict=True)
    }
    data["users.json"] = json.dumps(users_definitions(passwords, vhost), indent=2)
    data["RABBITMQ_MANAGEMENT_URL"] = management_url
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "agentry-broker-users", "labels": {"app.kubernetes.io/part-of": "agentry"}},
        "type": "Opaque",
        "stringData": data,
    }
    return json.dumps(secret, indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["ensure", "delete", "commands", "permissions", "compose", "k8s-secret"])
    parser.add_argument("--namespace", default=os.environ.get("AGENTRY_NAMESPACE", "agentry"))
    parser.add_argument("--env-file", type=Path, default=Path("data/broker-users.env"))
    parser.add_argument("--dir", type=Path, default=Path("data/compose"), help="compose: where the files go")
    parser.add_argument("--out", type=Path, help="permissions, k8s-secret: a file instead of standard output")
    parser.add_argument("--host", default="rabbitmq.rabbitmq.svc:5672", help="k8s-secret: the broker's host:port")
    parser.add_argument("--vhost", default="/", help="permissions, k8s-secret: the vhost")
    args = parser.parse_args(argv)
    base_url = os.environ.get("AMQP_URL", DEFAULT_URL)
    if args.action == "ensure":
        ensure(args.namespace, args.env_file, base_url)
        print(f"broker users of {args.namespace!r} ready; their AMQP_URLs are in {args.env_file}", file=sys.stderr)
    elif args.action == "delete":
        delete(args.namespace)
    elif args.action == "commands":
        print(commands(args.namespace, vhost_of(base_url)))
    elif args.action == "compose":
        compose(args.namespace, args.dir)
        print(f"broker users of {args.namespace!r} for docker compose are in {args.dir}", file=sys.stderr)
    else:
        if args.action == "permissions":
            text = json.dumps(definitions(Topology(args.namespace, partitions=1), args.vhost), indent=2) + "\n"
        else:
            management = os.environ.get("RABBITMQ_MANAGEMENT_URL", "")
            if not management:
                raise SystemExit(
                    "set RABBITMQ_MANAGEMENT_URL (http://admin:password@host:15672): the Job imports with it"
                )
            text = k8s_secret(args.namespace, args.host, args.vhost, management)
        if args.out is None:
            sys.stdout.write(text)
        elif args.action == "permissions":
            args.out.write_text(text)
        else:
            write_secret(args.out, text)


if __name__ == "__main__":
    main()
