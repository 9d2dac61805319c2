"""Which network addresses the fetcher may connect to (server-side request forgery guard).

Rule: a URL is fetched only if *every* address its host resolves to is public (``is_global``:
not loopback, private, link-local — 169.254.169.254 and the other cloud metadata endpoints
among them —, shared/CGNAT, unique-local, multicast, reserved or unspecified), unless the
allow-list (``VSM_FETCH_ALLOW``) names it. The connection then goes to one of the checked
addresses (the fetcher pins it), so a second DNS answer cannot swap in another address
between the check and the connect (DNS rebinding). Every redirect hop is checked again.

Allow-list entries, comma-separated:

* ``10.0.0.0/8``, ``127.0.0.1/32``, ``fd00::/8`` — a network: any port on those addresses;
* ``127.0.0.1:8080``, ``[::1]:8080`` — one address and port;
* ``intranet.example``, ``intranet.example:8443`` — a host name (any port, or that port), whatever
  it resolves to (the operator vouches for the name).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import anyio

from vsm_mcp.errors import ConfigError, Forbidden, InvalidArguments

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
WEB_PORTS: Mapping[str, int] = {"http": 80, "https": 443}
Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchRefused(Forbidden):
    """A URL the guard will not fetch: the message says which address and why."""


@dataclass(frozen=True)
class AllowList:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    endpoints: frozenset[tuple[IPAddress, int]] = frozenset()
    hosts: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse ``VSM_FETCH_ALLOW`` entries; a bad one raises ConfigError naming it."""
        nets, endpoints, hosts = [], set(), set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                if "/" in entry:
                    nets.append(ipaddress.ip_network(entry, strict=False))
                    continue
                host, port = _split_host_port(entry)
                ip = _ip_or_none(host)
                if ip is not None:
                    if port is None:
                        nets.append(ipaddress.ip_network(ip))
                    else:
                        endpoints.add((ip, port))
                else:
                    hosts.add((host.lower().rstrip("."), port))
            except ValueError as exc:
                raise ConfigError(f"invalid VSM_FETCH_ALLOW entry {entry!r}: {exc}") from None
        return cls(tuple(nets), frozenset(endpoints), frozenset(hosts))

    def allows_host(self, host: str, port: int) -> bool:
        name = host.lower().rstrip(".")
        return (name, port) in self.hosts or (name, None) in self.hosts

    def allows_address(self, ip: IPAddress, port: int) -> bool:
        return (ip, port) in self.endpoints or any(ip in net for net in self.networks)


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError("expected [ipv6]:port")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""  # a bare IPv6 address or a host name
    if not port:
        return host, None
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range")
    return host, number


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64-less IPv6 form (``::ffff:127.0.0.1``)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def why_not_public(ip: IPAddress) -> str | None:
    """None for a public address; else what it is (``loopback``, ``private``, ``link-local`` …)."""
    ip = unwrap(ip)
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata endpoints live here)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved or non-public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), as strings."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidArguments(f"cannot resolve host {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def split_url(
    url: str, schemes: Mapping[str, int], *, wanted: str, credentials: str, where: str = ""
) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL the guard may check, or InvalidArguments saying what is wrong.

    ``schemes`` maps each allowed scheme to its default port; ``wanted`` says what is allowed
    (the message for another scheme), ``credentials`` why user:password in the URL is refused,
    ``where`` (an argument name) prefixes every message.
    """
    at = f"{where}: " if where else ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArguments(f"{at}invalid URL {url!r}: {exc}") from None
    if parts.scheme not in schemes:
        raise InvalidArguments(f"{at}{wanted}, got {url!r}")
    if not parts.hostname:
        raise InvalidArguments(f"{at}URL {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidArguments(f"{at}URL {url!r} carries credentials; {credentials}")
    return parts.scheme, parts.hostname, port or schemes[parts.scheme]


@dataclass(frozen=True)
class Target:
    """Where a checked URL will connect: the host name (for Host and TLS) and the pinned address."""

    host: str
    port: int
    address: IPAddress

    def pinned_url(self, url: str) -> str:
        """``url`` with its host replaced by the checked address (the fragment dropped): the
        connection goes there, while the caller keeps the host name for Host and TLS."""
        parts = urlsplit(url)
        ip = self.address
        host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
        return urlunsplit((parts.scheme, f"{host}:{self.port}", parts.path or "/", parts.query, ""))


class AddressGuard:
    """Resolves a host and decides whether the fetcher may connect, returning the pinned address."""

    def __init__(self, allow: AllowList | None = None, resolver: Resolver | None = None) -> None:
        self.allow = allow or AllowList()
        self.resolver = resolver or system_resolver

    async def check(self, url: str, host: str, port: int) -> Target:
        literal = _ip_or_none(host)
        if literal is not None:
            addresses: Sequence[IPAddress] = [literal]
        else:
            if self.allow.allows_host(host, port):
                resolved = await self.resolver(host, port)
                if not resolved:
                    raise InvalidArguments(f"host {host!r} resolves to no address")
                return Target(host, port, ipaddress.ip_address(resolved[0].split("%", 1)[0]))
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self.resolver(host, port)]
            if not addresses:
                raise InvalidArguments(f"host {host!r} resolves to no address")
        for ip in addresses:
            reason = why_not_public(ip)
            if reason is not None and not self.allow.allows_address(unwrap(ip), port) and not self.allow.allows_address(ip, port):
                via = "" if literal is not None else f" ({host} resolves to {ip})"
                raise FetchRefused(
                    f"refused to fetch {url}: {ip} is {reason}{via}; add it to VSM_FETCH_ALLOW to allow it"
                )
        return Target(host, port, addresses[0])
