"""The broker permissions of each service, against the names topology.py and the services produce."""

from __future__ import annotations

import re
import string

import pytest
from agentry_shared.access import SERVICES, Service, declared_exchanges, permissions, topic_permissions
from agentry_shared.bus import Bus
from agentry_shared.settings import CommonSettings
from agentry_shared.topology import Topology
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

T = Topology("ns-1", partitions=4)
HEX = "0123456789abcdef0123456789abcdef"


def allowed(service: Service, kind: str, name: str) -> bool:
    return re.fullmatch(getattr(permissions(T, service), kind), name) is not None


def reply_key_allowed(service: Service, kind: str, key: str) -> bool:
    return re.fullmatch(getattr(topic_permissions(T, service), kind), key) is not None


# (service, permission, resource name): what each service does at run time.
NEEDED = [
    ("gateway", "write", T.log_exchange),
    ("gateway", "read", T.frames_exchange),
    ("gateway", "configure", f"ns-1.gateway.{HEX}"),
    ("gateway", "write", T.memory_exchange),
    ("gateway", "configure", T.reply_queue("gateway", HEX)),
    ("gateway", "read", T.reply_queue("gateway", HEX)),
    ("gateway", "read", T.replies_exchange),
    ("reasoner", "write", T.memory_exchange),
    ("reasoner", "write", T.tools_exchange),
    ("reasoner", "configure", T.reply_queue("reasoner", HEX)),
    ("reasoner", "read", T.turns_queue(3)),
    ("reasoner", "configure", T.turns_queue(3)),
    ("reasoner", "write", T.log_exchange),
    ("reasoner", "write", T.dead_letter_exchange),
    ("reasoner", "read", T.control_exchange),
    ("reasoner", "configure", f"ns-1.reasoner.{HEX}"),
    ("reasoner", "configure", "ns-1.members.reasoner.reasoner-0123456789ab"),
    ("reasoner", "write", T.members_exchange),
    ("memory", "read", T.log_queue(0)),
    ("memory", "write", T.turns_exchange),
    ("memory", "write", T.frames_exchange),
    ("memory", "write", T.control_exchange),
    ("memory", "read", T.dead_letter_queue),
    ("memory", "configure", T.handled_dead_letter_queue),
    ("memory", "write", T.handled_dead_letter_exchange),  # keeps what it handled in dead.handled
    ("memory", "configure", T.handled_dead_letter_exchange),
    ("memory", "read", T.handled_dead_letter_queue),  # takes an erased user's letters out again
    ("memory", "read", T.memory_rpc_queue),
    ("memory", "read", T.memory_exchange),
    ("memory", "write", T.replies_exchange),
    ("memory", "configure", "ns-1.members.memory.memory-0123456789ab"),
    ("tool-runner", "read", T.tool_queue("sandbox")),
    ("tool-runner", "configure", T.tool_queue("network")),
    ("tool-runner", "read", T.tool_catalog_queue),
    ("tool-runner", "read", T.control_exchange),
    ("tool-runner", "configure", f"ns-1.tool-runner.{HEX}"),
    ("tool-runner", "write", T.memory_exchange),
    ("tool-runner", "write", T.replies_exchange),
    ("tool-runner", "read", T.tools_exchange),
    ("tool-runner", "configure", T.reply_queue("tool-runner", HEX)),
    ("tool-runner", "write", T.dead_letter_exchange),
]

REFUSED = [
    # the default exchange reaches every queue by name: nobody writes to it
    *((service, "write", "amq.default") for service in SERVICES),
    *((service, "write", "") for service in SERVICES),
    ("tool-runner", "write", T.tools_exchange),
    ("tool-runner", "configure", T.reply_queue("reasoner", HEX)),
    ("gateway", "write", T.tools_exchange),
    ("gateway", "write", T.replies_exchange),
    ("gateway", "read", T.memory_exchange),
    ("gateway", "configure", T.reply_queue("reasoner", HEX)),
    ("reasoner", "write", T.replies_exchange),
    ("memory", "read", T.replies_exchange),
    ("memory", "configure", T.reply_queue("memory", HEX)),
    ("tool-runner", "write", T.log_exchange),
    ("tool-runner", "write", T.turns_exchange),
    ("tool-runner", "read", T.frames_exchange),
    ("tool-runner", "read", T.log_queue(0)),
    ("tool-runner", "read", T.memory_rpc_queue),
    ("tool-runner", "read", T.dead_letter_queue),
    ("tool-runner", "read", T.handled_dead_letter_queue),
    ("reasoner", "read", T.handled_dead_letter_queue),
    ("tool-runner", "configure", T.log_exchange),
    ("tool-runner", "configure", f"ns-1.gateway.{HEX}"),
    ("gateway", "write", T.turns_exchange),
    ("gateway", "read", T.log_queue(0)),
    ("gateway", "read", T.tool_queue("python")),
    ("reasoner", "read", T.frames_exchange),
    ("reasoner", "read", T.log_queue(1)),
    ("reasoner", "write", T.turns_exchange),
    ("memory", "read", T.tool_queue("python")),
    # another namespace, and names that only look alike
    ("memory", "read", "other.log.0"),
    ("tool-runner", "read", "ns-1.tools.a.b"),
    ("tool-runner", "read", "ns-1Xtools.python"),
    ("gateway", "configure", "ns-1.gateway.not-hex"),
]


@pytest.mark.parametrize(("service", "kind", "name"), NEEDED)
def test_each_service_may_do_what_it_needs(service: Service, kind: str, name: str) -> None:
    assert allowed(service, kind, name)


@pytest.mark.parametrize(("service", "kind", "name"), REFUSED)
def test_and_no_more(service: Service, kind: str, name: str) -> None:
    assert not allowed(service, kind, name)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_configure_what_its_bus_declares(service: Service) -> None:
    for exchange in declared_exchanges(T, service):
        assert allowed(service, "configure", exchange), exchange


def test_every_exchange_and_shared_queue_belongs_to_someone() -> None:
    names = [*T.exchanges(), *T.durable_queues(["python", "network"])]
    for name in names:
        assert any(allowed(s, "configure", name) for s in SERVICES), name


def test_a_bus_with_another_name_declares_everything() -> None:
    assert set(declared_exchanges(T, "test-client")) == set(T.exchanges())


REPLY_KEYS = [
    # (service, kind, routing key on the replies exchange, allowed)
    ("memory", "write", T.reply_queue("gateway", HEX), True),
    ("memory", "write", T.reply_queue("admin", HEX), True),
    ("tool-runner", "write", T.reply_queue("reasoner", HEX), True),
    ("memory", "write", "other.replies.gateway." + HEX, False),
    ("memory", "write", T.log_queue(0), False),
    ("gateway", "write", T.reply_queue("gateway", HEX), False),
    ("gateway", "read", T.reply_queue("gateway", HEX), True),
    ("gateway", "read", T.reply_queue("reasoner", HEX), False),
    ("gateway", "read", "#", False),
    ("tool-runner", "read", T.reply_queue("tool-runner", HEX), True),
    ("tool-runner", "read", T.reply_queue("reasoner", "*"), False),
    ("memory", "read", T.reply_queue("memory", HEX), False),
]


@pytest.mark.parametrize(("service", "kind", "key", "expected"), REPLY_KEYS)
def test_only_servers_reply_and_each_caller_hears_only_its_own_replies(
    service: Service, kind: str, key: str, expected: bool
) -> None:
    assert reply_key_allowed(service, kind, key) is expected


def test_a_bus_names_its_reply_queue_as_its_permissions_expect() -> None:
    for service in SERVICES:
        bus = Bus("amqp://unused/", T, name=service)
        assert T.is_reply_queue(bus.reply_queue)
        if service != "memory":
            assert allowed(service, "configure", bus.reply_queue)
            assert reply_key_allowed(service, "read", bus.reply_queue)
        assert reply_key_allowed("memory", "write", bus.reply_queue)


def _names_of(t: Topology) -> list[str]:
    """Every exchange and queue name a namespace's services use."""
    roles = ("gateway", "reasoner", "memory", "tool-runner")
    return [
        *t.exchanges(),
        *t.durable_queues(["default", "sandbox", "network"]),
        *(t.reply_queue(role, HEX) for role in roles),
        *(f"{t.namespace}.{role}.{HEX}" for role in roles),
        *(f"{t.namespace}.members.{role}.{role}-0123456789ab" for role in roles),
    ]


NAMESPACE = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(mine=NAMESPACE, other=NAMESPACE)
def test_no_namespace_may_touch_another_namespaces_names(mine: str, other: str) -> None:
    """Broker users are per namespace: whatever two namespaces are called, the grants of one
    match no name of the other (a dot in a namespace would: `a`'s grants cover the memory
    queue of `a.members`), and a namespace that could break that is refused."""
    assume(mine != other)
    try:
        ours, theirs = Topology(mine, partitions=2), Topology(other, partitions=2)
    except ValueError as exc:
        assert "." in mine + other and "no dot" in str(exc)
        return
    for service in SERVICES:
        granted = permissions(ours, service)
        for name in _names_of(theirs):
            for kind in ("configure", "write", "read"):
                assert re.fullmatch(getattr(granted, kind), name) is None, (service, kind, name)


def test_a_dotted_namespace_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="agentry_namespace"):
        CommonSettings(agentry_namespace="a.members")
    assert CommonSettings(agentry_namespace="a-members_2").agentry_namespace == "a-members_2"
