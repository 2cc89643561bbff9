"""The run's loaded targets per host, handed out within each host's limit.

``HostQueue`` is what keeps every host with pending work at its limit: bound hosts (the ones
whose own floor is longer than the run's) first, the rest round-robin, each plan cursor
(``Source``) refilled when it runs low so that one host's backlog never blocks the loading of
the others' work. All on the event loop, so no locks.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitor.fetch.hosts import HostLimiter
from monitor.store import plan as store

PAGE = 2000  # targets read from the plan per query
HOST_PAGE = 500  # targets read per query for a bound host (see bound_hosts)


@dataclass(slots=True)
class Source:
    """One cursor over the plan: the shared one (``MAIN``) or a bound host's own. Each keeps between
    ``page`` and two pages loaded, so one host's backlog never stops the loading of the others'
    work, and memory stays bounded."""

    page: int
    buffered: int = 0
    exhausted: bool = False
    low: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.low.set()


MAIN = ""  # the source of every host without a cursor of its own


def bound_hosts(counts: Mapping[str, int], limits: Mapping[str, int], concurrency: int) -> list[str]:
    """Hosts whose own floor (targets / host limit) is longer than the run's global floor.

    They set the run's pace, so they are served first and kept at their limit from the first
    second to the last: their floors and the global floor overlap instead of adding up. Their
    limits together stay below ``concurrency`` (a host is bound only when its share of the
    targets exceeds its share of the slots), so serving them first never starves the rest.
    Longest floor first.
    """
    total = sum(counts.values())
    if total == 0:
        return []
    bound = [h for h, n in counts.items() if n * concurrency > total * limits[h]]
    return sorted(bound, key=lambda h: (-counts[h] / limits[h], h))


class HostQueue:
    """The run's loaded targets per host, handed out within each host's limit.

    Bound hosts (``priority``, see ``bound_hosts``) get a free slot first; the other hosts
    take turns round-robin. ``take`` gives the next target of a host with work and a free
    slot (None if there is none now); ``release`` frees the slot and wakes one idle worker;
    each source's ``low`` asks its loader for another page. All on the event loop, so no locks.
    """

    def __init__(self, limiter: HostLimiter, priority: Sequence[str] = ()) -> None:
        self._limiter = limiter
        self._pending: dict[str, deque[store.Planned]] = {}
        self._ring: deque[str] = deque()  # hosts of the shared source with pending targets
        self._priority = list(priority)
        self._busy: Counter[str] = Counter()
        self._limits: dict[str, int] = {}
        self._idle: deque[asyncio.Future[None]] = deque()
        self.sources: dict[str, Source] = {MAIN: Source(PAGE)}
        for host in priority:
            self.sources[host] = Source(HOST_PAGE)
        self.buffered = 0

    @property
    def low(self) -> asyncio.Event:
        """The shared source's call for another page."""
        return self.sources[MAIN].low

    @property
    def finished(self) -> bool:
        """Nothing left to take, now or later."""
        return self.buffered == 0 and all(s.exhausted for s in self.sources.values())

    def add(self, page: Sequence[store.Planned], *, last: bool, source: str = MAIN) -> None:
        feed = self.sources[source]
        for item in page:
            host = item.target.host
            queue = self._pending.get(host)
            if queue is None:
                queue = self._pending[host] = deque()
                self._limits[host] = self._limiter.policy(host).concurrency  # one lookup rule
            if not queue and source == MAIN:
                self._ring.append(host)
            queue.append(item)
        self.buffered += len(page)
        feed.buffered += len(page)
        feed.exhausted = last
        if feed.buffered >= feed.page or last:
            feed.low.clear()
        if self.finished or last:
            self.wake_all()  # idle workers may end now, or take what a bound host just got
        else:
            for _ in range(min(len(page), len(self._idle))):
                self._wake_one()

    def promote(self, host: str) -> Source:
        """Give ``host`` a cursor of its own mid-run (it turned out bound once a streaming
        inventory ended): its targets loaded so far move from the shared source to the new one,
        and it leaves the round-robin for the first turn at a free slot."""
        feed = self.sources[host] = Source(HOST_PAGE)
        moved = len(self._pending.get(host, ()))
        if moved:
            self._ring.remove(host)
        main = self.sources[MAIN]
        main.buffered -= moved
        feed.buffered = moved
        if main.buffered < main.page and not main.exhausted:
            main.low.set()
        if feed.buffered >= feed.page:
            feed.low.clear()
        self._priority.append(host)
        return feed

    def take(self) -> store.Planned | None:
        for host in self._priority:
            if self._busy[host] < self._limits.get(host, 0) and self._pending.get(host):
                return self._hand_out(host, self.sources[host])
        ring = self._ring
        for _ in range(len(ring)):
            host = ring[0]
            ring.rotate(-1)  # the host is now last: the next take starts with the one after it
            if self._busy[host] < self._limits[host]:
                if len(self._pending[host]) == 1:
                    ring.pop()  # this host, in O(1) (a corpus may have a host per URL)
                return self._hand_out(host, self.sources[MAIN])
        return None

    def _hand_out(self, host: str, feed: Source) -> store.Planned:
        item = self._pending[host].popleft()
        self._busy[host] += 1
        self.buffered -= 1
        feed.buffered -= 1
        if feed.buffered < feed.page and not feed.exhausted:
            feed.low.set()
        elif self.finished:
            self.wake_all()  # the last target is out: idle workers end
        return item

    def release(self, item: store.Planned) -> None:
        self._busy[item.target.host] -= 1
        self._wake_one()

    def lend(self, host: str) -> None:
        """A taken target of ``host`` sleeps before a retry: its turn goes to another target."""
        self._busy[host] -= 1
        self._wake_one()

    def reclaim(self, host: str) -> None:
        """The sleeper counts again (one over the limit for a moment: the fetcher's host slot holds)."""
        self._busy[host] += 1

    async def wait(self) -> None:
        """Until a slot frees, a page arrives or the run stops."""
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self._idle:
            self._wake_one()
