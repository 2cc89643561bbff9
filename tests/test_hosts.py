"""Per-host politeness (monitor/hosts.py): slots, start spacing, adaptive slow-down, Retry-After."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from monitor.config import HostSettings, HttpSettings
from monitor.fetch.hosts import ADAPTIVE_START, HostLimiter, HostPolicy, host_settings


async def _hold(limiter: HostLimiter, key: str, seconds: float, starts: list[float]) -> None:
    async with limiter.slot(key):
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(seconds)


def test_host_settings_prefers_host_and_port_then_bare_host() -> None:
    """``host:port`` entries win over the bare host; unknown hosts get None."""
    exact, bare, v6 = HostSettings(concurrency=1), HostSettings(concurrency=2), HostSettings(concurrency=3)
    hosts = {"example.com:8080": exact, "example.com": bare, "[::1]": v6}
    assert host_settings(hosts, "example.com:8080") is exact
    assert host_settings(hosts, "example.com:9090") is bare
    assert host_settings(hosts, "example.com") is bare
    assert host_settings(hosts, "[::1]:8443") is v6
    assert host_settings(hosts, "other.org") is None
    assert host_settings({}, "example.com") is None


def test_policy_applies_per_host_overrides() -> None:
    """A host entry overrides concurrency and interval; unset fields fall back to the defaults."""
    http = HttpSettings(
        per_host_concurrency=8,
        min_interval_ms=10,
        hosts={
            "slow.example": HostSettings(concurrency=2, min_interval_ms=500),
            "few.example": HostSettings(),
        },
    )
    limiter = HostLimiter.from_settings(http)
    assert limiter.policy("slow.example") == HostPolicy(2, 0.5)
    assert limiter.policy("few.example") == HostPolicy(8, 0.01)
    assert limiter.policy("any.example") == HostPolicy(8, 0.01)


async def test_concurrency_per_host_is_bounded_and_independent() -> None:
    """No host ever has more requests in flight than its limit, and hosts do not share slots."""
    limiter = HostLimiter(3, overrides={"b.example": HostSettings(concurrency=1)})
    starts: list[float] = []
    tasks = [_hold(limiter, "a.example", 0.02, starts) for _ in range(10)]
    tasks += [_hold(limiter, "b.example", 0.02, starts) for _ in range(4)]
    await asyncio.gather(*tasks)
    assert limiter.peak("a.example") == 3
    assert limiter.peak("b.example") == 1
    assert limiter.peaks == {"a.example": 3, "b.example": 1}
    assert limiter.in_flight("a.example") == 0


async def test_min_interval_spaces_request_starts() -> None:
    """Consecutive starts on one host are at least ``min_interval`` apart even with free slots."""
    limiter = HostLimiter(4, 0.05)
    starts: list[float] = []
    await asyncio.gather(*(_hold(limiter, "a.example", 0.0, starts) for _ in range(4)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.049 for gap in gaps), gaps


async def test_min_interval_is_per_host() -> None:
    """Another host's spacing does not delay this one."""
    limiter = HostLimiter(4, 0.2)
    loop = asyncio.get_running_loop()
    await _hold(limiter, "a.example", 0.0, [])
    began = loop.time()
    await _hold(limiter, "b.example", 0.0, [])
    assert loop.time() - began < 0.1


def test_429_doubles_the_host_delay_up_to_the_cap_and_2xx_resets_it() -> None:
    """Each 429 doubles the penalty from 500 ms up to backoff_max; other errors keep it; 2xx clears it."""
    limiter = HostLimiter(2, backoff_max=3.0)
    seen = []
    for status in (429, 429, 429, 429, 404, 503, 200, 429):
        limiter.observe("a.example", status)
        seen.append(limiter.penalty("a.example"))
    seen.append(limiter.penalty("b.example"))
    assert seen == [ADAPTIVE_START, 1.0, 2.0, 3.0, 3.0, 3.0, 0.0, ADAPTIVE_START, 0.0]


async def test_penalty_slows_the_whole_host() -> None:
    """After a 429 every start on the host is spaced by the penalty (capped small here)."""
    limiter = HostLimiter(4, backoff_max=0.06)
    limiter.observe("a.example", 429)
    starts: list[float] = []
    await asyncio.gather(*(_hold(limiter, "a.example", 0.0, starts) for _ in range(3)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.059 for gap in gaps), gaps


async def test_retry_after_pauses_the_host_until_then() -> None:
    """A Retry-After holds back the next start on that host (and only that host) for its duration."""
    limiter = HostLimiter(4)
    loop = asyncio.get_running_loop()
    limiter.observe("a.example", 503, retry_after=0.2)
    assert 0.15 < limiter.paused_for("a.example") <= 0.2
    began = loop.time()
    await _hold(limiter, "b.example", 0.0, [])
    assert loop.time() - began < 0.1
    await _hold(limiter, "a.example", 0.0, [])
    assert loop.time() - began >= 0.199


async def test_retry_after_is_capped() -> None:
    """A Retry-After longer than retry_after_cap pauses the host only for the cap."""
    limiter = HostLimiter(4, retry_after_cap=0.1)
    limiter.observe("a.example", 429, retry_after=3600)
    assert 0.05 < limiter.paused_for("a.example") <= 0.1
    assert limiter.paused_for("unknown.example") == 0.0


async def test_pause_arriving_while_waiting_is_honoured() -> None:
    """A waiter already sleeping for its turn re-checks and also waits out a later Retry-After."""
    limiter = HostLimiter(4, 0.05)
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    await _hold(limiter, "a.example", 0.0, starts)
    waiter = asyncio.create_task(_hold(limiter, "a.example", 0.0, starts))
    await asyncio.sleep(0.01)
    limiter.observe("a.example", 429, retry_after=0.25)
    pushed = loop.time()
    await waiter
    assert starts[1] - pushed >= 0.24


@pytest.mark.parametrize("status", [None, 500, 301])
def test_non_429_answers_leave_the_penalty_alone(status: int | None) -> None:
    """Failures without a status, 5xx and redirects neither raise nor clear the penalty."""
    limiter = HostLimiter(1, backoff_max=10.0)
    limiter.observe("a.example", 429)
    limiter.observe("a.example", status)
    assert limiter.penalty("a.example") == ADAPTIVE_START
