"""SSRF guard: the checker never connects to loopback, private or otherwise internal addresses.

A corpus is untrusted input: a link (or a redirect it leads to) must not make the checker
probe the machine it runs on, the cloud metadata service or the office network. The check
runs on the *resolved* addresses, inside the DNS resolver the connector uses, and the
connector connects only to the addresses the resolver returned, so there is no gap between
"checked" and "connected" for DNS rebinding to slip through. IP literals never reach a
resolver (aiohttp short-circuits them), so the fetcher checks those with ``check_literal``
before every hop. Hosts come from the WHATWG parser (``monitor.urls.normalise_url``, for the
article's URL and every ``Location``), which writes every numeric IPv4 spelling
(``2852039166``, ``0xa9fea9fe``, ``169.254.43518``, ``0177.1``) as dotted decimal, so the literal
check sees them all.

Behind a proxy the proxy resolves and connects, so the connector's check never sees the target's
addresses. ``GuardedResolver.vet`` resolves a name here first and refuses it when *any* of its
addresses is refused (the proxy may pick any of them); ``safety.trust_proxy_dns = true`` skips
that, for a proxy that enforces its own egress policy or a machine that cannot resolve names.

``SafetySettings`` opens the gate: ``allow_private`` (everything), ``allow_hosts`` (names whose
addresses are not checked) and ``allow_cidrs`` (networks that are allowed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult

from monitor.config import SafetySettings

__all__ = ["AddressGuard", "BlockedAddress", "GuardedResolver", "address_problem"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_ADDRCONFIG = getattr(socket, "AI_ADDRCONFIG", 0)


class BlockedAddress(OSError):
    """The guard refused every address of a host; the message says which and why."""


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped or NAT64), else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address ("a loopback address", ...), or None if it is."""
    ip = _embedded_v4(ip)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a non-public address"  # e.g. 100.64.0.0/10 carrier-grade NAT
    return None


class AddressGuard:
    """Decides which resolved addresses may be connected to."""

    def __init__(self, safety: SafetySettings | None = None, extra_hosts: Iterable[str] = ()) -> None:
        safety = safety or SafetySettings()
        self.allow_private = safety.allow_private
        self._targets = frozenset(_clean_host(h) for h in safety.allow_hosts)
        # extra_hosts (the proxy) are trusted to be connected to, never as what a request asks for
        self._hosts = self._targets | frozenset(_clean_host(h) for h in extra_hosts)
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in safety.allow_cidrs)
        self._literals: dict[str, str | None] = {}  # checked on every hop; few distinct literals

    def host_allowed(self, host: str) -> bool:
        """Names listed in ``allow_hosts`` (or given as ``extra_hosts``) may be connected to whatever
        they resolve to."""
        return self.allow_private or _clean_host(host) in self._hosts

    def target_allowed(self, host: str) -> bool:
        """A request's own host in ``allow_hosts``: its address is not checked. The proxy's name or
        address is not enough: through the proxy that would reach the proxy's own network."""
        return self.allow_private or _clean_host(host) in self._targets

    def refusal(self, ip: IPAddress) -> str | None:
        """The reason to refuse ``ip`` ("10.0.0.1 is a private address"), or None when allowed."""
        if self.allow_private:
            return None
        problem = address_problem(ip)
        if problem is None:
            return None
        if any(ip.version == net.version and ip in net for net in self._networks):
            return None
        plain = _embedded_v4(ip)
        if plain is not ip and any(plain.version == n.version and plain in n for n in self._networks):
            return None
        return f"{ip} is {problem}"

    @staticmethod
    def is_literal(host: str) -> bool:
        """Whether ``host`` (as the WHATWG parser writes it) is an IP address rather than a name."""
        return host.startswith("[") or host.replace(".", "").isdigit()

    def check_literal(self, host: str) -> str | None:
        """The refusal for a host that is an IP literal (bare or bracketed); None for names."""
        try:
            return self._literals[host]
        except KeyError:
            pass
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            answer = None
        else:
            answer = None if self.target_allowed(host) else self.refusal(ip)
        if len(self._literals) >= 4096:
            self._literals.clear()
        self._literals[host] = answer
        return answer


def _clean_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that resolves once and returns only the addresses the guard allows.

    When every address is refused it raises ``BlockedAddress`` (an ``OSError``), which aiohttp
    wraps in ``ClientConnectorDNSError`` with the original as ``__cause__``; resolution errors
    (``socket.gaierror``) pass through the same way and become ``FetchFailure.DNS``.
    """

    VET_TTL = 300.0  # seconds a vetted name's answer is kept (the connector's own DNS cache TTL)
    VET_ENTRIES = 4096

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._vetted: dict[str, tuple[float, str | None]] = {}

    async def vet(self, host: str) -> None:
        """For a request handed to a proxy: raise ``BlockedAddress`` when any address ``host``
        resolves to here is refused; ``socket.gaierror`` when it does not resolve.

        IP literals are ``AddressGuard.check_literal``'s; names in ``allow_hosts`` pass. Answers
        are kept for ``VET_TTL`` seconds (failed lookups are not kept).
        """
        if self._guard.target_allowed(host) or AddressGuard.is_literal(host):
            return
        now = time.monotonic()
        known = self._vetted.get(host)
        if known is None or known[0] < now:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=_ADDRCONFIG)
            refusal = None
            for _, _, _, _, sockaddr in infos:
                refusal = self._guard.refusal(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
                if refusal is not None:
                    break
            if len(self._vetted) >= self.VET_ENTRIES:
                self._vetted.clear()
            known = self._vetted[host] = (now + self.VET_TTL, refusal)
        if known[1] is not None:
            raise BlockedAddress(f"{known[1]} (an address of {host})")

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family, flags=_ADDRCONFIG)
        trusted = self._guard.host_allowed(host)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for fam, _, proto, _, sockaddr in infos:
            if fam == socket.AF_INET6 and len(sockaddr) < 3:
                continue  # IPv6 unsupported by this Python build
            address, resolved_port = str(sockaddr[0]), int(sockaddr[1])
            if not trusted:
                why = self._guard.refusal(ipaddress.ip_address(address.partition("%")[0]))
                if why is not None:
                    refusals.append(why)
                    continue
            allowed.append(
                ResolveResult(
                    hostname=host, host=address, port=resolved_port, family=fam, proto=proto, flags=_NUMERIC
                )
            )
        if not allowed and refusals:
            raise BlockedAddress(refusals[0])
        if not allowed:
            raise socket.gaierror(socket.EAI_NONAME, f"no usable address for {host}")
        return allowed

    async def close(self) -> None:
        return None
