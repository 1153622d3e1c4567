"""What each service may do on the broker: RabbitMQ's configure, write and read regexes.

One RabbitMQ user per service (docs/deploy.md), each limited to the exchanges and queues
of its own namespace that it uses, derived from `topology.py` so that a renamed queue
cannot drift from its permission. RabbitMQ matches each regex against exchange *and*
queue names:

- configure: declare (and so delete) an exchange or queue;
- write: publish to an exchange; bind a queue (write on the queue, read on the exchange);
  declare a queue that dead-letters (write on the dead-letter exchange);
- read: consume or purge a queue; bind from an exchange; declare a dead-lettering queue.

Nobody may write to the default exchange (`amq.default`): it reaches every queue by name.
An RPC request goes to its server's exchange (`topology.RpcTarget`), so a service writes
only to the exchanges of the servers it calls; the reply goes through the `replies` topic
exchange to the caller's exclusive queue `<ns>.replies.<service>.<hex>`, bound by its own
name. Topic permissions on `replies` keep that honest: a server may publish only to reply
queues of its namespace, a caller may bind only its own service's reply queues (so the
gateway cannot bind a queue that hears the reasoner's replies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agentry_shared.topology import REPLY_NAME, Topology

Service = Literal["gateway", "reasoner", "memory", "tool-runner"]
SERVICES: tuple[Service, ...] = ("gateway", "reasoner", "memory", "tool-runner")
# The offline model speaks HTTP only: it gets no broker user.

_HEX = "[0-9a-f]+"
_NAME = "[A-Za-z0-9_-]+"
_PARTITION = "[0-9]+"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class TopicPermissions:
    """`rabbitmqctl set_topic_permissions`: routing keys a user may publish to / bind on `exchange`."""

    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Grants:
    """One service's names: literal exchanges, and queue names as regex parts."""

    declares: tuple[str, ...]  # exchanges it declares at connect (those it publishes to or binds from)
    publishes: tuple[str, ...]  # exchanges
    binds_from: tuple[str, ...]  # exchanges
    queues: tuple[str, ...]  # regexes of the queues it declares, binds and consumes
    calls: tuple[str, ...] = ()  # exchanges of the RPC servers it calls (it then has reply queues)
    answers: bool = False  # serves RPC: publishes replies


def _with_rpc(t: Topology, service: Service, g: Grants) -> Grants:
    """Adds what RPC needs: the callees' exchanges, the replies exchange, its reply queues."""
    replies = (t.replies_exchange,) if g.calls or g.answers else ()
    return Grants(
        declares=(*g.declares, *g.calls, *replies),
        publishes=(*g.publishes, *g.calls, *((t.replies_exchange,) if g.answers else ())),
        binds_from=(*g.binds_from, *((t.replies_exchange,) if g.calls else ())),
        queues=(*g.queues, *((_reply_queues(t, service),) if g.calls else ())),
        calls=g.calls,
        answers=g.answers,
    )


def _reply_queues(t: Topology, service: Service) -> str:
    return re.escape(t.reply_queue(service, "")) + _HEX


def grants(topology: Topology, service: Service) -> Grants:
    return _with_rpc(topology, service, _own(topology, service))


def _own(topology: Topology, service: Service) -> Grants:
    t = topology
    ns = re.escape(t.namespace)
    if service == "gateway":
        return Grants(
            declares=(t.log_exchange, t.frames_exchange),
            publishes=(t.log_exchange,),
            binds_from=(t.frames_exchange,),
            queues=(rf"{ns}\.gateway\.{_HEX}",),
            calls=(t.memory_exchange,),
        )
    if service == "reasoner":
        return Grants(
            declares=(t.log_exchange, t.turns_exchange, t.control_exchange, t.members_exchange),
            publishes=(t.log_exchange, t.members_exchange, t.dead_letter_exchange),
            binds_from=(t.turns_exchange, t.control_exchange, t.members_exchange),
            queues=(
                re.escape(t.turns_queue(0)).removesuffix("0") + _PARTITION,
                rf"{ns}\.reasoner\.{_HEX}",
                rf"{ns}\.members\.reasoner\.{_NAME}",
            ),
            calls=(t.memory_exchange, t.tools_exchange),
        )
    if service == "memory":
        return Grants(
            declares=tuple(name for name in t.exchanges() if name not in (t.tools_exchange, t.replies_exchange)),
            publishes=(
                t.turns_exchange,
                t.frames_exchange,
                t.control_exchange,
                t.members_exchange,
                t.dead_letter_exchange,
                t.handled_dead_letter_exchange,
            ),
            binds_from=(
                t.log_exchange,
                t.turns_exchange,
                t.members_exchange,
                t.memory_exchange,
                t.dead_letter_exchange,
                t.handled_dead_letter_exchange,
            ),
            queues=(
                re.escape(t.log_queue(0)).removesuffix("0") + _PARTITION,
                re.escape(t.turns_queue(0)).removesuffix("0") + _PARTITION,
                re.escape(t.memory_rpc_queue),
                re.escape(t.dead_letter_queue),
                re.escape(t.handled_dead_letter_queue),
                rf"{ns}\.members\.memory\.{_NAME}",
            ),
            answers=True,
        )
    if service == "tool-runner":
        return Grants(
            declares=(t.tools_exchange, t.control_exchange),
            publishes=(t.dead_letter_exchange,),
            binds_from=(t.tools_exchange, t.control_exchange),
            queues=(
                re.escape(t.tool_queue("pool")).removesuffix("pool") + _NAME,  # the pools and tools.catalog
                rf"{ns}\.tool-runner\.{_HEX}",
            ),
            calls=(t.memory_exchange,),  # claims, and the memory tools
            answers=True,
        )
    raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")


def _any(literals: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> str:
    parts = sorted({re.escape(name) for name in literals}) + list(patterns)
    return "^(" + "|".join(parts) + ")$" if parts else "^$"


def permissions(topology: Topology, service: Service) -> Permissions:
    """The three regexes of `rabbitmqctl set_permissions` for `service` in `topology`'s namespace."""
    g = grants(topology, service)
    return Permissions(
        configure=_any(g.declares, g.queues),
        write=_any(g.publishes, g.queues),
        read=_any(g.binds_from, g.queues),
    )


def topic_permissions(topology: Topology, service: Service) -> TopicPermissions:
    """The routing keys `service` may use on the replies exchange (a topic exchange)."""
    g = grants(topology, service)
    prefix = re.escape(topology.replies_exchange)
    return TopicPermissions(
        exchange=topology.replies_exchange,
        write=rf"^{prefix}\.{REPLY_NAME}$" if g.answers else "^$",
        read=f"^{_reply_queues(topology, service)}$" if g.calls else "^$",
    )


def declared_exchanges(topology: Topology, name: str) -> tuple[str, ...]:
    """What a Bus named `name` declares at connect: its service's exchanges, every one
    for any other name (tests, tools of the operator)."""
    if name in SERVICES:
        return tuple(dict.fromkeys(grants(topology, name).declares))
    return tuple(topology.exchanges())


def user_name(namespace: str, service: Service) -> str:
    return f"{namespace}-{service}"


def definitions(topology: Topology, vhost: str = "/") -> dict[str, list[dict[str, str]]]:
    """The permissions of every service of `topology`'s namespace as a RabbitMQ definitions
    document (`load_definitions`, `POST /api/definitions`): no users, no secrets, so it is
    committed (k8s/base, compose/) and the tests compare it with this function."""
    users = {service: user_name(topology.namespace, service) for service in SERVICES}
    return {
        "permissions": [{"user": users[s], "vhost": vhost, **vars(permissions(topology, s))} for s in SERVICES],
        "topic_permissions": [
            {"user": users[s], "vhost": vhost, **vars(topic_permissions(topology, s))} for s in SERVICES
        ],
    }
