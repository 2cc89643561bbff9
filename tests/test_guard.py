"""SSRF guard (monitor/guard.py): which addresses are refused, what opens the gate, the resolver."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config import SafetySettings
from monitor.fetch.guard import AddressGuard, BlockedAddress, GuardedResolver, address_problem


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


def test_extra_hosts_are_trusted() -> None:
    """Names given by the fetcher itself (the proxy) are trusted like allow_hosts."""
    guard = AddressGuard(SafetySettings(), extra_hosts=["proxy.corp"])
    assert guard.host_allowed("proxy.corp")


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
