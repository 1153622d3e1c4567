"""Which addresses http_fetch may connect to: public ones, and those the operator names.

An allowlisted *name* proves nothing about where it points: DNS can send it to 127.0.0.1,
a private network or the cloud's metadata service at 169.254.169.254. So every address a
name resolves to is checked, and the connection goes to the checked address (no second
lookup that could answer differently). An internal address is reachable only when the
operator lists it, or a network holding it, in TOOL_RUNNER_HTTP_ALLOWLIST (`10.0.0.7`,
`10.1.0.0/16`, `::1`).

Standard library only: this runs in the sandboxed child.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Blocked by name, so the refusal says why; anything else that is not globally routable
# (Python's `is_global`: documentation ranges, benchmarking, 6to4 relays, ...) is "reserved".
_NAMED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("link-local (cloud metadata lives here)", ("169.254.0.0/16", "fe80::/10")),
    ("carrier-grade NAT", ("100.64.0.0/10",)),
    ("unique-local", ("fc00::/7",)),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("reserved", ("240.0.0.0/4", "255.255.255.255/32")),
)
BLOCKED: tuple[tuple[str, IPNetwork], ...] = tuple(
    (reason, ipaddress.ip_network(network)) for reason, networks in _NAMED for network in networks
)


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def why_internal(address: IPAddress) -> str | None:
    """None for a public address; otherwise the kind of internal range it belongs to."""
    address = embedded_ipv4(address)
    for reason, network in BLOCKED:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global:
        return "reserved"
    return None


class Policy:
    """TOOL_RUNNER_HTTP_ALLOWLIST split into host names and addresses or networks."""

    def __init__(self, names: frozenset[str], networks: tuple[IPNetwork, ...]) -> None:
        self.names = names
        self.networks = networks

    @classmethod
    def parse(cls, entries: list[str]) -> Policy:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def listed(self, address: IPAddress) -> bool:
        candidates = {address, embedded_ipv4(address)}
        return any(a.version == n.version and a in n for a in candidates for n in self.networks)

    def host_allowed(self, host: str) -> bool:
        """The URL's host: a listed name, or an address literal inside a listed network."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names
        return self.listed(literal)

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to, after checking every address `host` has.

        Raises PermissionError naming the refused address, OSError when it does not resolve.
        """
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:
            reason = why_internal(address)
            if reason is not None and not self.listed(address):
                raise PermissionError(
                    f"{host} resolves to {address}, a {reason} address; list the address or its network "
                    "in TOOL_RUNNER_HTTP_ALLOWLIST to allow it"
                )
        return str(addresses[0])
