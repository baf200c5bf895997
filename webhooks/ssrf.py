"""Which network addresses a webhook may be sent to. Pure Python, no Django.

The check is made on *resolved* addresses, so every spelling of a host (names, decimal, octal,
hex or shortened IPv4, bracketed IPv6) ends up here in one canonical form. The blocklist is
explicit rather than ``ipaddress.is_private``/``is_global``, whose tables change between Python
releases and which call several IPv6 spellings of IPv4 loopback "global".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


#: IPv4 ranges no webhook goes to: (range, why).
BLOCKED_IPV4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(cidr), why) for cidr, why in [
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "AS112"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "AS112"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (and broadcast)"),
    ]
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
#: IPv6 ranges inside global unicast (2000::/3) that are still not for webhooks. Everything
#: outside 2000::/3 (loopback, unspecified, ULA, link-local, multicast, discard...) is refused
#: by that rule alone, once the forms that embed an IPv4 address have been unwrapped.
BLOCKED_IPV6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(cidr), why) for cidr, why in [
        ("2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
    ]
)
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
_UNSPECIFIED_V6 = ipaddress.IPv6Address("::")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


class BlockedDestination(Exception):
    """A delivery was refused because of where it would go. The message names no address."""

    def __init__(self, reason: str = "the destination is not allowed") -> None:
        super().__init__(reason)
        self.reason = reason


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if address in _MAPPED or address in _COMPATIBLE or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFF_FFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is refused, or ``None`` when a webhook may go there."""
    if isinstance(address, ipaddress.IPv6Address):
        if address == _LOOPBACK_V6:
            return "loopback"
        if address == _UNSPECIFIED_V6:
            return "unspecified"
        inner = embedded_ipv4(address)
        if inner is not None:
            why = blocked_reason(inner)
            if why is not None:
                return f"{why} (IPv4 inside IPv6)"
            if address in _COMPATIBLE:
                return "deprecated IPv4-compatible IPv6 form"
            return None
        if address not in _GLOBAL_UNICAST_V6:
            return "not IPv6 global unicast (loopback, link-local, unique local, multicast...)"
        for network, why in BLOCKED_IPV6:
            if address in network:
                return why
        return None
    for network4, why in BLOCKED_IPV4:
        if address in network4:
            return why
    return None


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``ALLOWED_NETWORKS`` as network objects (host bits allowed: ``127.0.0.1/8``)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _canonical(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address in _MAPPED:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def is_allowed(address: IPAddress, allowed_networks: Sequence[IPNetwork] = ()) -> bool:
    """Whether a webhook may go to ``address``: public, or inside an allowed network."""
    canonical = _canonical(address)
    if any(canonical.version == net.version and canonical in net for net in allowed_networks):
        return True
    return blocked_reason(address) is None


def parse_address(sockaddr_host: str) -> IPAddress:
    """An address from ``getaddrinfo`` (an IPv6 zone such as ``%eth0`` is dropped)."""
    return ipaddress.ip_address(sockaddr_host.split("%", 1)[0])


def is_local_name(host: str) -> bool:
    """``localhost`` or a name under ``.localhost``: the machine itself (RFC 6761)."""
    bare = host.strip("[]").rstrip(".").lower()
    return bare == "localhost" or bare.endswith(".localhost")


def is_name(host: str) -> bool:
    """Whether ``host`` is a DNS name: not an address (in any notation the C library reads:
    decimal, octal, hex, shortened IPv4, bracketed IPv6), nor ``localhost`` or a name under
    ``.localhost`` (RFC 6761: never leaves the machine). Asks no resolver.

    Whether a *name* resolves inside the network is not told to those who configure
    endpoints: it is not checked when they save a URL, and a refusal when sending reads like
    a name that does not resolve.
    """
    bare = host.strip("[]").rstrip(".").lower()
    if is_local_name(bare):
        return False
    try:
        socket.getaddrinfo(bare.split("%", 1)[0], None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return True
    return False


def _getaddrinfo(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def resolve(host: str, port: int, allowed_networks: Sequence[IPNetwork] = ()) -> list[Any]:
    """Resolve ``host`` once and return its ``getaddrinfo`` entries if *every* address may be
    reached; raise :class:`BlockedDestination` if any may not (a name that mixes public and
    private answers is refused whole). ``socket.gaierror`` propagates.
    """
    infos = _getaddrinfo(host.strip("[]"), port)
    if not infos:
        raise socket.gaierror(f"no address for {host}")
    for info in infos:
        address = parse_address(info[4][0])
        if not is_allowed(address, allowed_networks):
            raise BlockedDestination()
    return infos
