"""The address guard: which hosts the server may contact when it fetches a URL for a client.

A URL's host is resolved and every address it resolves to must be public — not loopback,
private, shared (CGNAT), link-local, multicast, reserved or unspecified, in IPv4 or IPv6, with
IPv4-mapped, NAT64 and 6to4 IPv6 addresses judged by the IPv4 address inside them — unless the
host name, the address or a range holding it is in the allow-list
(``TONEWIRE_URL_ALLOWLIST``). The caller then connects to an address this module returned,
never resolving the name again, so DNS rebinding between check and connect cannot happen.

Pure apart from the resolver, which is injectable (tests resolve names without DNS).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tonewire.errors import UrlNotAllowed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses`` as strings; raises ``OSError`` when the name does not resolve."""

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for a TCP connection, in its order, deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


def parse_address(text: str) -> Address:
    """An address literal, brackets and IPv6 zone allowed; raises ``ValueError``."""
    address = ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    return address


def unwrap(address: Address) -> Address:
    """The IPv4 address inside an IPv4-mapped (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::/96``)
    or 6to4 (``2002::/16``) IPv6 address, else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def refusal_reason(address: Address) -> str | None:
    """Why the server must not connect to ``address`` by default, or ``None`` if it is public."""
    # An address embedding an IPv4 address is judged by that address: that is where a
    # mapped socket, a NAT64 gateway or a 6to4 relay connects.
    candidate = unwrap(address)
    if candidate.is_unspecified:
        return "unspecified"
    if candidate.is_loopback:
        return "loopback"
    if candidate.is_link_local:
        return "link-local"
    if candidate.is_multicast:
        return "multicast"
    if candidate.is_private:
        return "private"
    if isinstance(candidate, ipaddress.IPv4Address) and candidate in _SHARED:
        return "shared (carrier-grade NAT)"
    if candidate.is_reserved:
        return "reserved"
    if not candidate.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Hosts, addresses and CIDR ranges the guard lets through although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """From ``["example.internal", "127.0.0.1", "10.0.0.0/8", "::1"]``; raises
        ``ValueError`` on an entry that is none of these."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            bare = entry.strip("[]")
            try:
                network = ipaddress.ip_network(bare, strict=False)
            except ValueError:
                if "/" in entry or not _looks_like_host(entry):
                    raise ValueError(f"allow-list entry {raw!r} is not a host, address or "
                                     "CIDR range") from None
                hosts.add(entry.rstrip("."))
                continue
            networks.append(network)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: Address) -> bool:
        # An IPv4 entry also covers the address's IPv4-mapped (and NAT64, 6to4) spelling.
        inner = unwrap(address)
        return any(a in n for n in self.networks for a in {address, inner}
                   if a.version == n.version)


class AddressGuard:
    """Resolve a host and return only addresses the server may connect to."""

    def __init__(self, allowlist: Allowlist | None = None, *,
                 resolver: Resolver = system_resolver) -> None:
        self.allowlist = allowlist or Allowlist()
        self.resolver = resolver

    def check(self, host: str, address: Address) -> None:
        """Raise :class:`UrlNotAllowed` unless ``host`` may be reached at ``address``."""
        if self.allowlist.allows_host(host) or self.allowlist.allows_address(address):
            return
        reason = refusal_reason(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise UrlNotAllowed(f"{shown} is a {reason} address; the server does not fetch "
                                "from it unless it is in TONEWIRE_URL_ALLOWLIST")

    def resolve(self, host: str, port: int) -> list[Address]:
        """Every address of ``host``, each checked; refused if any one is not allowed (a name
        mixing public and private addresses is treated as hostile). Raises
        :class:`UrlNotAllowed`, or ``OSError`` when the name does not resolve."""
        try:
            addresses = [parse_address(host)]
        except ValueError:
            addresses = [parse_address(a) for a in self.resolver(host, port)]
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        for address in addresses:
            self.check(host, address)
        return addresses


def _looks_like_host(entry: str) -> bool:
    labels = entry.rstrip(".").split(".")
    return all(label and len(label) <= 63 and all(ch.isalnum() or ch in "-_" for ch in label)
               for label in labels)
