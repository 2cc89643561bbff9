"""Per-host politeness: how many requests a host gets at once and how often they may start.

Every request takes a slot of its host key (``host[:port]``) before it takes a global one, so
a crowd waiting for one slow host holds no global capacity. Inside a slot the request waits
for its host's turn: starts are spaced by the host's interval, which is the configured
``min_interval_ms`` or the adaptive penalty, whichever is larger. The penalty follows lychee:
each 429 doubles it (starting at 500 ms, capped at ``backoff_max``), any 2xx clears it. A
``Retry-After`` pauses the whole host until then (capped at ``retry_after_cap``).

A distributed shard holding a *share* of a split host's limit (``ProcessLimits.with_share``)
gets slots of its own for that host, as many as its share: the planner makes the shares of a
host add up to its limit, so the host sees at most that limit however its shards spread over
processes and machines (retries and redirect hops back to it take the same slots).
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.config import HostSettings, HttpSettings

__all__ = ["ADAPTIVE_START", "HostLimiter", "HostPolicy", "ProcessLimits", "host_settings"]

ADAPTIVE_START = 0.5  # seconds added between starts after the first 429 (lychee's starting delay)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Concurrency and start spacing for one host."""

    concurrency: int
    min_interval: float = 0.0


def host_settings(hosts: Mapping[str, HostSettings], key: str) -> HostSettings | None:
    """The ``[http.hosts]`` entry for a host key: ``host:port`` first, then the bare host."""
    if not hosts:
        return None
    found = hosts.get(key)
    if found is not None:
        return found
    # "[::1]:8080" → "[::1]"; "example.com:8080" → "example.com"
    bare = key[: key.find("]") + 1] if key.startswith("[") else (key.rpartition(":")[0] or key)
    return hosts.get(bare) if bare != key else None


class _Host:
    __slots__ = ("in_flight", "last_start", "paused_until", "peak", "penalty", "policy", "semaphore")

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.semaphore = asyncio.Semaphore(policy.concurrency)
        self.last_start = -math.inf
        self.paused_until = 0.0
        self.penalty = 0.0
        self.in_flight = 0
        self.peak = 0


class _Slot:
    """``async with limiter.slot(key)``: a plain class, cheaper per request than a generator CM."""

    __slots__ = ("_host", "_key", "_limiter")

    def __init__(self, limiter: HostLimiter, host: _Host, key: str) -> None:
        self._limiter, self._host, self._key = limiter, host, key

    async def __aenter__(self) -> None:
        host = self._host
        await host.semaphore.acquire()
        try:
            await self._limiter._wait_turn(host)
        except BaseException:
            host.semaphore.release()
            raise
        host.in_flight += 1
        if host.in_flight > host.peak:
            host.peak = host.in_flight
            peaks = self._limiter.peaks
            if host.peak > peaks.get(self._key, 0):  # a share's slots report into the process's peaks
                peaks[self._key] = host.peak

    async def __aexit__(self, *exc: object) -> None:
        self._host.in_flight -= 1
        self._host.semaphore.release()


class HostLimiter:
    """Slots, start spacing and adaptive slow-down per host key (event-loop local)."""

    def __init__(
        self,
        concurrency: int,
        min_interval: float = 0.0,
        *,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
        overrides: Mapping[str, HostSettings] | None = None,
    ) -> None:
        self._default = HostPolicy(concurrency, min_interval)
        self._overrides = dict(overrides or {})
        self._backoff_max = backoff_max
        self._retry_after_cap = retry_after_cap
        self._hosts: dict[str, _Host] = {}
        self.peaks: dict[str, int] = {}
        self._share_key: str | None = None  # the host this limiter holds a share of (with_share)
        self._share: _Host | None = None

    def with_share(self, key: str, concurrency: int) -> HostLimiter:
        """This limiter (the same host table, so the same state for every other host) except that
        ``key`` gets ``concurrency`` slots of its own: one shard's share of a host split over shards.
        Its spacing, penalty and pauses are the share's own too."""
        view = copy.copy(self)
        view._share_key = key
        view._share = _Host(HostPolicy(concurrency, self.policy(key).min_interval))
        return view

    @classmethod
    def from_settings(cls, http: HttpSettings) -> HostLimiter:
        return cls(
            http.per_host_concurrency,
            http.min_interval_ms / 1000,
            backoff_max=http.backoff_max,
            retry_after_cap=http.retry_after_cap,
            overrides=http.hosts,
        )

    def policy(self, key: str) -> HostPolicy:
        """The effective concurrency and interval of a host key (the share's, for a shared host)."""
        if self._share is not None and key == self._share_key:
            return self._share.policy
        extra = host_settings(self._overrides, key)
        if extra is None:
            return self._default
        return HostPolicy(
            extra.concurrency or self._default.concurrency,
            self._default.min_interval if extra.min_interval_ms is None else extra.min_interval_ms / 1000,
        )

    def _find(self, key: str) -> _Host | None:
        if self._share is not None and key == self._share_key:
            return self._share
        return self._hosts.get(key)

    def _host(self, key: str) -> _Host:
        host = self._find(key)
        if host is None:
            host = self._hosts[key] = _Host(self.policy(key))
        return host

    def slot(self, key: str) -> _Slot:
        """Hold one of the host's slots, entered no earlier than the host's next allowed start."""
        return _Slot(self, self._host(key), key)

    async def _wait_turn(self, host: _Host) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            # Computed afresh on every wake-up: a 429 or Retry-After may have arrived meanwhile.
            spacing = max(host.policy.min_interval, host.penalty)
            start = max(host.last_start + spacing, host.paused_until)
            if start <= now:
                host.last_start = now
                return
            await asyncio.sleep(start - now)

    def observe(self, key: str, status: int | None, retry_after: float | None = None) -> None:
        """Learn from an answer: 429 slows the host, 2xx restores it, Retry-After pauses it."""
        host = self._host(key)
        if status == 429:
            host.penalty = min(self._backoff_max, max(ADAPTIVE_START, host.penalty * 2))
        elif status is not None and 200 <= status < 300:
            host.penalty = 0.0
        if retry_after is not None and retry_after > 0:
            until = asyncio.get_running_loop().time() + min(retry_after, self._retry_after_cap)
            host.paused_until = max(host.paused_until, until)

    def penalty(self, key: str) -> float:
        """The host's current adaptive delay between starts, in seconds."""
        host = self._find(key)
        return host.penalty if host is not None else 0.0

    def paused_for(self, key: str) -> float:
        """Seconds until the host may be asked again because of a Retry-After (0 if not paused)."""
        host = self._find(key)
        if host is None:
            return 0.0
        return max(0.0, host.paused_until - asyncio.get_running_loop().time())

    def in_flight(self, key: str) -> int:
        host = self._find(key)
        return host.in_flight if host is not None else 0

    def peak(self, key: str) -> int:
        """The most requests this host ever had in flight at once."""
        return self.peaks.get(key, 0)


class ProcessLimits:
    """One process's global slots and host limiter, for fetchers that run at the same time.

    A distributed worker checks several shards at once so that one shard's slow tail (a
    timeout, a Retry-After pause) never leaves the worker idle; their fetchers share these,
    so the worker as a whole keeps ``http.concurrency`` and every per-host limit.
    """

    def __init__(self, http: HttpSettings) -> None:
        self.limiter = HostLimiter.from_settings(http)
        self.slots = asyncio.Semaphore(http.concurrency)

    def with_share(self, key: str, concurrency: int) -> ProcessLimits:
        """The same global slots and host table, but ``concurrency`` slots of its own for ``key``."""
        view = copy.copy(self)
        view.limiter = self.limiter.with_share(key, concurrency)
        return view
