"""Dispatch of one run's targets: hosts handed out round-robin within their limits, one writer.

``Run`` checks what a ``RunScope`` selects (a whole run, one process's hosts, or one
distributed shard): it loads the plan in pages (memory stays flat), keeps every host
within its limit while no global slot waits on a busy host, and hands finished outcomes
to a single writer that commits them in batches (``batch.save_results``). A crash loses
at most the batch in hand; a resume checks only what has no result yet.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Engine

from monitor import alerts
from monitor.clock import utcnow
from monitor.config import Settings
from monitor.fetch.fetcher import Fetcher
from monitor.fetch.hosts import HostLimiter, ProcessLimits
from monitor.run.batch import ignore_reason, ignored_outcome, save_results, write_with_retry
from monitor.run.hostqueue import HOST_PAGE, MAIN, PAGE, HostQueue, Source, bound_hosts
from monitor.run.soft404 import open_probes, save_probes
from monitor.run.stream import Growth
from monitor.store import plan as store
from monitor.store import runs
from monitor.types import FetchFailure, FetchOutcome, Target

log = structlog.get_logger("monitor.run")

WRITE_BATCH = 200  # results per transaction
WRITE_INTERVAL = 0.5  # seconds; a partial batch is written at least this often
FD_RESERVE = 64  # descriptors kept for the database, logs and the event loop


@dataclass(frozen=True, slots=True)
class RunScope:
    """Which targets of a run one dispatcher checks: the plan filter and an optional share of it."""

    run_id: int
    only_failing: bool = False
    stale_before: dict[str, datetime] | None = None  # adaptive freshness cut-offs per role
    hosts: Sequence[str] | None = None  # only these hosts (one process's or one shard's share)
    id_range: tuple[int, int] | None = None  # and only these url ids (a slice of a giant host)


def effective_concurrency(wanted: int) -> int:
    """Lower ``wanted`` below the open-file limit instead of failing mid-run with EMFILE."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, (soft - FD_RESERVE) // 2)  # a request may hold two descriptors while reconnecting
    if wanted > room:
        log.warning("concurrency.lowered", wanted=wanted, lowered_to=room, open_file_limit=soft)
        return room
    return wanted


class Run:
    """Dispatcher + single writer for the targets of one ``RunScope``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        scope: RunScope,
        stop: asyncio.Event,
        *,
        total: int = 0,
        on_progress: Callable[[int, int], None] | None = None,
        growing: Growth | None = None,
    ) -> None:
        self.settings = settings
        self.growing = growing  # a streaming inventory still adding URLs (run/stream.py)
        self.promoted = growing is None  # bound hosts looked at again once that inventory ended
        self.engine = engine
        self.scope = scope
        self.run_id = scope.run_id
        self.request_gate: Callable[[], Awaitable[None]] | None = None  # awaited before every request
        self.limits: ProcessLimits | None = None  # slots shared with the process's other runs
        self.stop = stop
        self.total = total
        self.on_progress = on_progress
        self.concurrency = effective_concurrency(settings.http.concurrency)
        self.events: list[alerts.Event] = []
        self.cut_short = False
        self.done = 0
        # results waiting for the writer; the dispatcher waits while max_pending are queued
        self.pending: list[tuple[store.Planned, FetchOutcome]] = []
        self.max_pending = max(self.concurrency * 4, WRITE_BATCH * 2)
        self.wake_writer = asyncio.Event()
        self.room = asyncio.Event()
        self.closing = False

    async def execute(self) -> None:
        writer = self.writer = asyncio.create_task(self._writer())
        try:
            http = self.settings.http.model_copy(update={"concurrency": self.concurrency})
            probes = await open_probes(self.settings.verdicts.soft_404, self.engine)
            async with Fetcher(
                http,
                self.settings.safety,
                gate=self.request_gate,
                on_retry_wait=self._retry_wait,
                limits=self.limits,
                soft404=probes,
            ) as fetcher:
                await self._dispatch(fetcher)
            await save_probes(probes, self.engine)
        finally:
            if not writer.done():
                await self._emit(None)
            await writer  # re-raises a writer failure (e.g. the database refused a batch)

    async def _load(
        self, after_id: int, source: str, exclude: Sequence[str], slow: bool
    ) -> list[store.Planned]:
        def page() -> list[store.Planned]:
            with self.engine.connect() as conn:
                return store.plan_page(
                    conn,
                    run_id=self.scope.run_id,
                    after_id=after_id,
                    limit=PAGE if source == MAIN else HOST_PAGE,
                    only_failing=self.scope.only_failing,
                    stale_before=self.scope.stale_before,
                    hosts=self.scope.hosts if source == MAIN else (source,),
                    exclude_hosts=exclude if source == MAIN else None,
                    id_range=self.scope.id_range,
                    timed_out=slow,
                )

        return await asyncio.to_thread(page)

    async def _bound(self, limiter: HostLimiter, known: Sequence[str] = ()) -> list[str]:
        """The scope's bound hosts (``bound_hosts``), from its targets per host; logged when there
        are any besides ``known``."""

        def counts() -> dict[str, int]:
            return store.count_plan_by_host(
                self.engine,
                run_id=self.scope.run_id,
                only_failing=self.scope.only_failing,
                stale_before=self.scope.stale_before,
                hosts=self.scope.hosts,
                id_range=self.scope.id_range,
            )

        found = await asyncio.to_thread(counts)
        limits = {host: limiter.policy(host).concurrency for host in found}
        bound = [h for h in bound_hosts(found, limits, self.concurrency) if h not in known]
        if bound:
            log.info(
                "run.bound_hosts",
                run_id=self.run_id,
                hosts={h: found[h] for h in bound[:10]},
                floor_targets=max(found[h] // limits[h] for h in bound),
            )
        return bound

    async def _dispatch(self, fetcher: Fetcher) -> None:
        """``concurrency`` workers fetch one target after another; finished results go to the writer.

        A worker sends its next request in the same event-loop step in which it finished the
        last one (no task per URL, no dispatcher hop between an answer and the next request),
        taking targets round-robin from the hosts that have work and a free slot, so a busy host
        never holds a worker another host could use. A fetch that sleeps before a retry lends its
        turn (``_retry_wait``). On stop, requests in flight get ``shutdown_grace_seconds`` to
        finish; what is cut has no result and a resume redoes it.
        """
        self.fetcher = fetcher
        bound = await self._bound(fetcher.limiter)
        queue = self.queue = HostQueue(fetcher.limiter, bound)
        loaders = [asyncio.create_task(self._feed(queue, source, bound)) for source in queue.sources]
        workers = {asyncio.create_task(self._work(fetcher, queue)) for _ in range(self.concurrency)}
        stop_wait = asyncio.create_task(self.stop.wait())
        running = self.running = set(workers)  # spare workers join it while they work
        try:
            watched = {stop_wait, *loaders}
            while running and not self.stop.is_set():
                done, _ = await asyncio.wait(running | watched, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop_wait}:
                    task.result()  # a worker's or the loader's failure (e.g. the writer died) ends the run
                    running.discard(task)
                    watched.discard(task)
            if running:
                self.cut_short = True
                queue.wake_all()  # idle workers see the stop and end
                _, rest = await asyncio.wait(running, timeout=self.settings.jobs.shutdown_grace_seconds)
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)
        finally:
            stop_wait.cancel()
            everyone = [*loaders, *workers, *running]
            for task in everyone:
                task.cancel()
            await asyncio.gather(*everyone, return_exceptions=True)

    async def _feed(
        self, queue: HostQueue, source: str, bound: list[str], start: tuple[bool, int] = (True, 0)
    ) -> None:
        """Load ``source``'s plan pages whenever its buffer runs low, until it is exhausted. What timed
        out last time comes first: started near the end, it would hold the run open for its whole
        timeout (nightly runs meet the same dead hosts); a first run pays one empty query.

        While a streaming inventory goes on (``growing``), a cursor that reaches the end waits for
        the next committed batch instead of ending; when the inventory ends, hosts that turned out
        bound get cursors of their own, from where the shared one stands (``_promote``).
        ``start`` is the phase and position to begin at (a promoted host's).
        """
        feed = queue.sources[source]
        growing = self.growing
        shared = growing if source == MAIN else None  # the shared cursor also promotes
        promoted: list[asyncio.Task[None]] = []
        phases = (True, False) if start[0] else (False,)
        for timed_out in phases:
            after_id = start[1] if timed_out == start[0] else 0
            while True:
                await self._until_low(feed, shared)
                if shared is not None and shared.done and not self.promoted:
                    promoted += await self._promote(queue, bound, timed_out, after_id)
                    continue  # the shared buffer may have shrunk: look again whether it is low
                mark = growing.mark() if growing is not None else None
                page = await self._load(after_id, source, bound, timed_out)
                end = len(page) < feed.page
                more = end and not timed_out and mark is not None and not mark[1]
                queue.add(page, last=end and not timed_out and not more, source=source)
                if page:
                    after_id = page[-1].url_id
                if more and growing is not None and mark is not None:
                    await growing.after(mark)  # the next batch of new articles, or the end
                elif end:
                    break
        await asyncio.gather(*promoted)  # their failures end the run through this loader

    async def _until_low(self, feed: Source, growing: Growth | None) -> None:
        """Until ``feed`` asks for a page, or (streaming) the inventory ended: bound hosts are then
        promoted at once, not when a buffer full of the busiest host's targets has drained."""
        if growing is None or self.promoted:
            await feed.low.wait()
            return
        waits = {asyncio.ensure_future(feed.low.wait()), asyncio.ensure_future(growing.finished.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _promote(
        self, queue: HostQueue, bound: list[str], timed_out: bool, after_id: int
    ) -> list[asyncio.Task[None]]:
        """The streaming inventory ended: count the run's targets again (its total, and which hosts
        are bound now that all of them are known) and give the new bound hosts their cursors."""
        self.promoted = True
        self.total = await asyncio.to_thread(self._recount)
        hosts = await self._bound(self.fetcher.limiter, known=list(queue.sources))
        for host in hosts:
            queue.promote(host)
            bound.append(host)  # the shared cursor leaves them out from its next page on
        return [
            asyncio.create_task(self._feed(queue, host, bound, start=(timed_out, after_id))) for host in hosts
        ]

    def _recount(self) -> int:
        scope = self.scope
        total = store.count_run_targets(
            self.engine, run_id=scope.run_id, only_failing=scope.only_failing, stale_before=scope.stale_before
        )
        runs.set_total(self.engine, scope.run_id, total)
        return total

    def _retry_wait(self, target: Target, sleeping: bool) -> None:
        """A fetch sleeps before a retry (or wakes): it holds no host or global slot meanwhile, so
        its host's turn and its worker's place go to a spare worker that checks one target."""
        if sleeping:
            self.queue.lend(target.host)
            self.running.add(asyncio.create_task(self._work(self.fetcher, self.queue, once=True)))
        else:
            self.queue.reclaim(target.host)

    async def _work(self, fetcher: Fetcher, queue: HostQueue, *, once: bool = False) -> None:
        while not self.stop.is_set():
            item = queue.take()
            if item is None:
                if queue.finished:
                    return
                await queue.wait()
                continue
            rules = self.settings.ignore  # usually none: no clock read per URL then
            skip = ignore_reason(rules, item.target.url, item.target.host, utcnow()) if rules else None
            try:
                if skip is not None:  # an ignore rule: never requested
                    outcome = ignored_outcome(item.target, skip)
                else:
                    outcome = await fetcher.fetch_unshared(item.target)
            except Exception as exc:  # a bug inside fetch becomes a visible failure, not a lost URL
                outcome = internal_error(item.target, exc)
            finally:
                queue.release(item)
            await self._emit((item, outcome))
            if once:
                return

    async def _emit(self, item: tuple[store.Planned, FetchOutcome] | None) -> None:
        """Hand a result (None: the end) to the writer; wait while it is too far behind (if the
        writer died, raise its error rather than wait for ever)."""
        if item is None:
            self.closing = True
            self.wake_writer.set()
            return
        self.pending.append(item)
        if len(self.pending) >= WRITE_BATCH:
            self.wake_writer.set()
        while len(self.pending) >= self.max_pending:
            self.room.clear()
            room = asyncio.ensure_future(self.room.wait())
            await asyncio.wait({room, self.writer}, return_when=asyncio.FIRST_COMPLETED)
            if not room.done():
                room.cancel()
                self.writer.result()  # the writer ended without taking the items: surface why
                raise RuntimeError("the result writer stopped early")

    async def _writer(self) -> None:
        """Write what the dispatcher produced: a batch when one is full, or every WRITE_INTERVAL."""
        while True:
            if not self.closing and len(self.pending) < WRITE_BATCH:
                with suppress(TimeoutError):
                    async with asyncio.timeout(WRITE_INTERVAL):
                        await self.wake_writer.wait()
            self.wake_writer.clear()
            while self.pending:
                batch = self.pending[:WRITE_BATCH]
                del self.pending[:WRITE_BATCH]
                self.room.set()
                await self._flush(batch)
                if len(self.pending) < WRITE_BATCH and not self.closing:
                    break
            if self.closing and not self.pending:
                return

    async def _flush(self, batch: list[tuple[store.Planned, FetchOutcome]]) -> None:
        events = await write_with_retry(
            lambda: save_results(self.engine, self.settings, self.run_id, batch), what=f"{len(batch)} results"
        )
        self.events.extend(events)
        self.done += len(batch)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def internal_error(target: Target, exc: Exception) -> FetchOutcome:
    """A bug inside fetch, logged and recorded as a protocol failure of this URL."""
    log.error("fetch.bug", url=target.url, error=f"{type(exc).__name__}: {exc}")
    return FetchOutcome(
        url=target.url, failure=FetchFailure.PROTOCOL, failure_detail=f"internal error: {exc}"
    )
