"""What each service may do on the broker: RabbitMQ's configure, write and read regexes.

One RabbitMQ user per service (docs/deploy.md), each limited to the exchanges and queues
of its own namespace that it uses, derived from `topology.py` so that a renamed queue
cannot drift from its permission. RabbitMQ matches each regex against exchange *and*
queue names:

- configure: declare (and so delete) an exchange or queue;
- write: publish to an exchange; bind a queue (write on the queue, read on the exchange);
  declare a queue that dead-letters (write on the dead-letter exchange);
- read: consume or purge a queue; bind from an exchange; declare a dead-lettering queue.

Every RPC caller and server also writes to `amq.default`: requests go to a queue by
name, replies to the caller's direct reply-to (`amq.rabbitmq.reply-to`, which needs no
permission of its own). The default exchange reaches every queue by name, so this grant
is wider than the rest; see docs/deploy.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agentry_shared.topology import Topology

Service = Literal["gateway", "reasoner", "memory", "tool-runner"]
SERVICES: tuple[Service, ...] = ("gateway", "reasoner", "memory", "tool-runner")
# The offline model speaks HTTP only: it gets no broker user.

DEFAULT_EXCHANGE = "amq.default"
_HEX = "[0-9a-f]+"
_NAME = "[A-Za-z0-9_-]+"
_PARTITION = "[0-9]+"


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str


@dataclass(frozen=True)
class Grants:
    """One service's names: literal exchanges, and queue names as regex parts."""

    declares: tuple[str, ...]  # exchanges it declares at connect (those it publishes to or binds from)
    publishes: tuple[str, ...]  # exchanges
    binds_from: tuple[str, ...]  # exchanges
    queues: tuple[str, ...]  # regexes of the queues it declares, binds and consumes
    rpc: bool = True


def grants(topology: Topology, service: Service) -> Grants:
    t = topology
    ns = re.escape(t.namespace)
    if service == "gateway":
        return Grants(
            declares=(t.log_exchange, t.frames_exchange),
            publishes=(t.log_exchange,),
            binds_from=(t.frames_exchange,),
            queues=(rf"{ns}\.gateway\.{_HEX}",),
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
        )
    if service == "memory":
        return Grants(
            declares=tuple(name for name in t.exchanges() if name != t.tools_exchange),
            publishes=(
                t.turns_exchange,
                t.frames_exchange,
                t.control_exchange,
                t.members_exchange,
                t.dead_letter_exchange,
            ),
            binds_from=(t.log_exchange, t.turns_exchange, t.members_exchange, t.dead_letter_exchange),
            queues=(
                re.escape(t.log_queue(0)).removesuffix("0") + _PARTITION,
                re.escape(t.turns_queue(0)).removesuffix("0") + _PARTITION,
                re.escape(t.memory_rpc_queue),
                re.escape(t.dead_letter_queue),
                re.escape(t.handled_dead_letter_queue),
                rf"{ns}\.members\.memory\.{_NAME}",
            ),
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
        )
    raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")


def _any(literals: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> str:
    parts = sorted({re.escape(name) for name in literals}) + list(patterns)
    return "^(" + "|".join(parts) + ")$" if parts else "^$"


def permissions(topology: Topology, service: Service) -> Permissions:
    """The three regexes of `rabbitmqctl set_permissions` for `service` in `topology`'s namespace."""
    g = grants(topology, service)
    rpc = (DEFAULT_EXCHANGE,) if g.rpc else ()
    return Permissions(
        configure=_any(g.declares, g.queues),
        write=_any((*g.publishes, *rpc), g.queues),
        read=_any(g.binds_from, g.queues),
    )


def declared_exchanges(topology: Topology, name: str) -> tuple[str, ...]:
    """What a Bus named `name` declares at connect: its service's exchanges, every one
    for any other name (tests, tools of the operator)."""
    if name in SERVICES:
        return grants(topology, name).declares
    return tuple(topology.exchanges())


def user_name(namespace: str, service: Service) -> str:
    return f"{namespace}-{service}"
