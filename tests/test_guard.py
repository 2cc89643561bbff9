"""SSRF guard (monitor/guard.py): which addresses are refused, what opens the gate, the resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import HttpSettings, SafetySettings
from monitor.fetch.fetcher import Fetcher
from monitor.fetch.guard import AddressGuard, BlockedAddress, GuardedResolver, address_problem
from monitor.types import FetchFailure, Target, TargetKind
from monitor.urls import host_key, normalise_url
from tests.h2server import H2Server
from tests.server import FixtureServer
from tests.test_check import write
from tests.test_safety import check, frontmatter, results, strict, to


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.254", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "a non-public address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address"),
        ("198.51.100.7", "a private address"),
    ],
)
def test_internal_addresses_are_named(address: str, problem: str) -> None:
    """Loopback, private, link-local (incl. metadata), multicast, unspecified, reserved, CGNAT and
    IPv4 addresses hidden in IPv6 (mapped, NAT64) are all recognised."""
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    """Global unicast addresses (also IPv4-mapped ones) are fine."""
    assert address_problem(ipaddress.ip_address(address)) is None


def test_refusal_message_names_address_and_reason() -> None:
    """The refusal reads like "127.0.0.1 is a loopback address"."""
    guard = AddressGuard()
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) == "127.0.0.1 is a loopback address"
    assert guard.refusal(ipaddress.ip_address("93.184.215.14")) is None


def test_allow_private_opens_everything() -> None:
    """allow_private lets every address and literal through."""
    guard = AddressGuard(SafetySettings(allow_private=True))
    assert guard.refusal(ipaddress.ip_address("169.254.169.254")) is None
    assert guard.check_literal("10.0.0.1") is None
    assert guard.host_allowed("anything.internal")


def test_allow_cidrs_opens_only_those_networks() -> None:
    """A listed network is allowed (also through its IPv4-mapped form); others stay refused."""
    guard = AddressGuard(SafetySettings(allow_cidrs=["127.0.0.0/8", "fd00::/8"]))
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("fd00::5")) is None
    assert guard.refusal(ipaddress.ip_address("::1")) == "::1 is a loopback address"
    assert guard.refusal(ipaddress.ip_address("10.0.0.1")) == "10.0.0.1 is a private address"


def test_allow_hosts_is_by_name_only() -> None:
    """allow_hosts trusts a name (case and trailing dot ignored), never an address literal."""
    guard = AddressGuard(SafetySettings(allow_hosts=["Intranet.Example."]))
    assert guard.host_allowed("intranet.example")
    assert guard.host_allowed("INTRANET.example.")
    assert not guard.host_allowed("other.example")
    assert guard.check_literal("127.0.0.1") == "127.0.0.1 is a loopback address"


def test_check_literal_handles_names_and_bracketed_ipv6() -> None:
    """Names are left to the resolver; bare and bracketed IP literals are checked here."""
    guard = AddressGuard()
    assert guard.check_literal("example.com") is None
    assert guard.check_literal("[::1]") == "::1 is a loopback address"
    assert guard.check_literal("::1") == "::1 is a loopback address"
    assert guard.check_literal("8.8.8.8") is None


def test_extra_hosts_are_trusted_to_connect_to_but_not_as_targets() -> None:
    """Names given by the fetcher itself (the proxy) may be connected to whatever they resolve to, but a
    request *for* the proxy's host is checked like any other: through the proxy it would reach the
    proxy's own loopback or network."""
    guard = AddressGuard(SafetySettings(), extra_hosts=["proxy.corp", "127.0.0.1"])
    assert guard.host_allowed("proxy.corp") and guard.host_allowed("127.0.0.1")
    assert not guard.target_allowed("proxy.corp")
    assert guard.check_literal("127.0.0.1") == "127.0.0.1 is a loopback address"
    listed = AddressGuard(SafetySettings(allow_hosts=["intranet.example"]))
    assert listed.target_allowed("intranet.example") and listed.host_allowed("intranet.example")


async def test_vet_refuses_a_name_when_any_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a proxy: one private address among public ones is enough to refuse (the proxy may pick it)."""

    async def getaddrinfo(self: Any, host: str, port: Any, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in ("93.184.215.14", "10.0.0.7")]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    resolver = GuardedResolver(AddressGuard(SafetySettings()))
    with pytest.raises(
        BlockedAddress, match=r"^10\.0\.0\.7 is a private address \(an address of mixed\.example\)$"
    ):
        await resolver.vet("mixed.example")
    await resolver.vet("10.0.0.7")  # literals are check_literal's, not vet's
    await GuardedResolver(AddressGuard(SafetySettings(allow_hosts=["mixed.example"]))).vet("mixed.example")


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses())
def test_only_global_addresses_pass_by_default(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Whatever the address, the default guard lets it through only if it is global and not multicast."""
    allowed = AddressGuard().refusal(ip) is None
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if allowed:
        assert plain.is_global and not plain.is_multicast


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**24 - 1))
def test_ten_slash_eight_is_refused_in_every_spelling(offset: int) -> None:
    """Any 10.x.y.z is refused, as itself and as an IPv4-mapped IPv6 address."""
    v4 = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.0")) + offset)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    guard = AddressGuard()
    assert guard.refusal(v4) == f"{v4} is a private address"
    assert guard.refusal(mapped) is not None


async def test_resolver_refuses_a_name_that_resolves_to_loopback() -> None:
    """With default settings, "localhost" resolves but every address is refused (BlockedAddress)."""
    resolver = GuardedResolver(AddressGuard())
    with pytest.raises(BlockedAddress, match=r"^127\.0\.0\.1 is a loopback address$"):
        await resolver.resolve("localhost", 80, socket.AF_INET)


async def test_resolver_returns_allowed_addresses_ready_to_connect() -> None:
    """An allowed name comes back as numeric results the connector connects to unchanged."""
    for safety in (SafetySettings(allow_hosts=["localhost"]), SafetySettings(allow_cidrs=["127.0.0.0/8"])):
        results = await GuardedResolver(AddressGuard(safety)).resolve("localhost", 8080, socket.AF_INET)
        assert [(r["host"], r["port"], r["family"], r["hostname"]) for r in results] == [
            ("127.0.0.1", 8080, socket.AF_INET, "localhost")
        ]
        assert results[0]["flags"] & socket.AI_NUMERICHOST


# --- every spelling of an internal address, end to end, with and without a proxy -------------------

# The spellings a browser (and so normalise_url) reads as these addresses: decimal, hex and octal
# numbers, per part or whole, the short forms (a last part filling the remaining bytes), and
# IPv4-mapped / NAT64 IPv6. Each maps to the words the guard's refusal must contain.
LOOPBACK_SPELLINGS = {
    "127.0.0.1": "127.0.0.1 is a loopback address",
    "2130706433": "127.0.0.1 is a loopback address",
    "0x7f000001": "127.0.0.1 is a loopback address",
    "0X7F.0x00.0x00.0x01": "127.0.0.1 is a loopback address",
    "0177.0.0.1": "127.0.0.1 is a loopback address",
    "0177.0000.0000.0001": "127.0.0.1 is a loopback address",
    "017700000001": "127.0.0.1 is a loopback address",
    "127.1": "127.0.0.1 is a loopback address",
    "127.0.1": "127.0.0.1 is a loopback address",
    "0x7f.1": "127.0.0.1 is a loopback address",
    "127.0.0.1.": "127.0.0.1 is a loopback address",
    "[::ffff:127.0.0.1]": "::ffff:7f00:1 is a loopback address",
    "[0:0:0:0:0:ffff:7f00:1]": "::ffff:7f00:1 is a loopback address",
    "[64:ff9b::127.0.0.1]": "64:ff9b::7f00:1 is a loopback address",
    "[::1]": "::1 is a loopback address",
    "[0:0:0:0:0:0:0:1]": "::1 is a loopback address",
    "[0000::0001]": "::1 is a loopback address",
    "0": "0.0.0.0 is an unspecified address",
    "0.0.0.0": "0.0.0.0 is an unspecified address",
    "0x0": "0.0.0.0 is an unspecified address",
    "00": "0.0.0.0 is an unspecified address",
    "0.0": "0.0.0.0 is an unspecified address",
    "[::ffff:0.0.0.0]": "::ffff:0:0 is an unspecified address",
    "[::]": ":: is an unspecified address",
}
ELSEWHERE_SPELLINGS = {
    "10.1.2.3": "10.1.2.3 is a private address",
    "167838211": "10.1.2.3 is a private address",
    "0xa010203": "10.1.2.3 is a private address",
    "0xa.1.2.3": "10.1.2.3 is a private address",
    "012.1.2.3": "10.1.2.3 is a private address",
    "10.1.515": "10.1.2.3 is a private address",
    "10.66051": "10.1.2.3 is a private address",
    "[::ffff:10.1.2.3]": "::ffff:a01:203 is a private address",
    "169.254.169.254": "169.254.169.254 is a link-local address",
    "2852039166": "169.254.169.254 is a link-local address",
    "0xa9fea9fe": "169.254.169.254 is a link-local address",
    "0xA9.0xFE.0xA9.0xFE": "169.254.169.254 is a link-local address",
    "0251.0376.0251.0376": "169.254.169.254 is a link-local address",
    "025177524776": "169.254.169.254 is a link-local address",
    "169.254.43518": "169.254.169.254 is a link-local address",
    "169.16689662": "169.254.169.254 is a link-local address",
    "[::ffff:169.254.169.254]": "::ffff:a9fe:a9fe is a link-local address",
    "[::ffff:a9fe:a9fe]": "::ffff:a9fe:a9fe is a link-local address",
}


def _connect_tripwire(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every socket connect of the event loop is recorded, and none leaves 127.0.0.1: had the guard
    let a 10.x or 169.254.x spelling through, the connect fails here instead of reaching the network."""
    connects: list[object] = []
    original = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def recording(self: Any, sock: Any, address: Any) -> None:
        connects.append(address)
        if address[0] not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError(f"test tripwire: no connect to {address[0]}")
        await original(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", recording)
    return connects


@pytest.mark.parametrize("http2", [False, True], ids=["default", "http2"])
@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "proxy"])
def test_no_spelling_of_an_internal_address_gets_a_request_out(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: bool, http2: bool
) -> None:
    """Default safety: every spelling (and a name resolving to loopback) comes out ``skipped`` with the
    guard's reason, and neither the fixture server (also the proxy) nor any socket saw a request."""
    connects = _connect_tripwire(monkeypatch)
    port = server.port
    urls = {
        f"http://{host}:{port}/status/200?spelling={n}": why
        for n, (host, why) in enumerate({**LOOPBACK_SPELLINGS, **ELSEWHERE_SPELLINGS}.items())
    }
    urls[f"http://localhost:{port}/status/200"] = "is a loopback address"
    write(
        tmp_path,
        "a.md",
        "---\nrelated:\n" + "".join(f"  - webUrl: {json.dumps(u)}\n" for u in urls) + "---\n",
    )
    extra: dict[str, object] = {"http.http2": http2, "http.connect_timeout": 30.0, "http.total_timeout": 60.0}
    if proxy:
        extra["http.proxy"] = server.url("")
    outcome, engine = check(strict(tmp_path, **extra))
    rows = results(engine)
    for url, why in urls.items():
        normal = normalise_url(url)
        assert isinstance(normal, str), url
        row = rows[normal]
        assert (row["verdict"], row["failure"]) == ("skipped", "blocked_address"), url
        assert why in row["reason"], (url, row["reason"])
    assert outcome.counts == {"skipped": len(urls)}
    assert server.requests("/") == []
    assert connects == []


@pytest.mark.parametrize("http2", [False, True], ids=["default", "http2"])
@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "proxy"])
def test_a_redirect_to_a_numeric_spelling_is_refused_at_that_hop(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: bool, http2: bool
) -> None:
    """A Location is read as a browser reads it, so ``http://2852039166/`` and ``\\\\0x7f.1`` are the
    addresses they spell, refused before the next hop, on both transports, proxy or not."""
    connects = _connect_tripwire(monkeypatch)
    port = server.port
    starts = {
        server.url("/redirect-to/302" + to("http://2852039166/latest/"), "localhost"): (
            "169.254.169.254 is a link-local address"
        ),
        server.url("/redirect-to/307" + to(f"\\\\0x7f.1:{port}/status/200?reached=1"), "localhost"): (
            "127.0.0.1 is a loopback address"
        ),
    }
    write(tmp_path, "a.md", frontmatter(webUrl=next(iter(starts)), ampWebUrl=list(starts)[1]))
    extra: dict[str, object] = {"http.http2": http2, "safety.allow_hosts": ["localhost"]}
    if proxy:
        extra["http.proxy"] = server.url("")
    outcome, engine = check(strict(tmp_path, **extra))
    rows = results(engine)
    assert outcome.counts == {"skipped": 2}
    for url, why in starts.items():
        assert why in rows[url]["reason"]
    assert sorted(r.path for r in server.requests("/")) == ["/redirect-to/302", "/redirect-to/307"]
    assert all(address[0] in ("127.0.0.1", "::1") for address in connects)  # type: ignore[index]


# --- the same refusal at a redirect hop over a real HTTP/2 session ----------------------------------


@pytest.fixture(scope="module")
def h2() -> Iterator[H2Server]:
    server = H2Server().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("https://127.0.0.1:{port}/status/200?reached=1", "127.0.0.1 is a loopback address"),
        ("https://0x7f.1:{port}/status/200?reached=1", "127.0.0.1 is a loopback address"),
        ("https://[::ffff:127.0.0.1]:{port}/status/200?reached=1", "::ffff:7f00:1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("https://2852039166/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ],
)
async def test_an_http2_redirect_to_an_internal_address_is_refused_at_that_hop(
    h2: H2Server, monkeypatch: pytest.MonkeyPatch, location: str, why: str
) -> None:
    """With ``http2 = true`` the first hop (allowed by name) is answered over HTTP/2, and its
    Location to an internal address is refused by the guard before any connection to it."""
    connects = _connect_tripwire(monkeypatch)
    start = h2.url("/redirect-to/302?to=" + quote(location.format(port=h2.port), safe=""), "localhost")
    settings = HttpSettings(http2=True, verify_tls=False, max_retries=0, total_timeout=10.0)
    async with Fetcher(settings, SafetySettings(allow_hosts=["localhost"])) as fetcher:
        outcome = await fetcher.fetch(Target(start, host_key(start), TargetKind.PAGE))
    assert outcome.failure is FetchFailure.BLOCKED_ADDRESS
    assert why in outcome.failure_detail
    assert [(hop.status, hop.url) for hop in outcome.redirects] == [(302, start)]
    # the first hop went out over HTTP/2 (the server speaks nothing else), once; the second never did
    first = start.partition(f":{h2.port}")[2]
    assert [method for method, path in h2.seen if path == first] == ["HEAD"]
    assert [path for _, path in h2.seen if not path.startswith("/redirect-to/")] == []
    assert connects != [] and all(address[0] in ("127.0.0.1", "::1") for address in connects)  # type: ignore[index]
