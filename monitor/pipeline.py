"""The one module that wires the stages: corpus → links → fetch → verdict → store → alert.

A run plans its targets from the inventory in pages (memory stays flat), dispatches
them so that no host ever has more than its limit in flight and no global slot waits
on a busy host, judges each outcome, and hands results to a single writer that
commits them in batches as the run goes. A crash loses at most the batch in hand;
``resume`` finishes an interrupted run by checking only what has no result yet.

The targets of a run can be split by host (``shard_of``), so a later executor can run
shards on other machines against the same database.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from monitor import alerts, processes
from monitor.config import Settings
from monitor.fetch import Fetcher
from monitor.hosts import HostLimiter
from monitor.inventory import SyncReport, sync_inventory
from monitor.store import results as store
from monitor.store.db import StoreError
from monitor.types import (
    CheckResult,
    FetchFailure,
    FetchOutcome,
    Hop,
    ImageFacts,
    Judgement,
    Role,
    Severity,
    Size,
    SizeCheck,
    Target,
    TargetKind,
    Verdict,
)
from monitor.urls import redact_url
from monitor.verdict import classify, severity_for, size_check

log = structlog.get_logger("monitor.pipeline")
T = TypeVar("T")

PAGE = 2000  # targets read from the plan per query
WRITE_BATCH = 200  # results per transaction
WRITE_INTERVAL = 0.5  # seconds; a partial batch is written at least this often
NOT_MODIFIED = " (not modified)"
DB_RETRIES = 6  # reconnect attempts for one batch (about 6 s in all)
FD_RESERVE = 64  # descriptors kept for the database, logs and the event loop


def utcnow() -> datetime:
    """Aware UTC: every timestamp column is UTC-aware (SQLModel UTCDateTime)."""
    return datetime.now(UTC)


@dataclass(slots=True)
class RunOutcome:
    """What a run did, for the CLI summary and the jobs."""

    run_id: int
    state: str
    total: int
    checked: int
    counts: dict[str, int]
    severities: dict[str, int]
    duration_s: float
    inventory: SyncReport | None = None
    events: list[alerts.Event] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.severities.get(Severity.ERROR.value, 0)

    @property
    def warnings(self) -> int:
        return self.severities.get(Severity.WARNING.value, 0)


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


async def run_check(
    settings: Settings,
    engine: Engine,
    *,
    paths: Sequence[str] | None = None,
    trigger: str = "cli",
    only_failing: bool = False,
    resume: bool = False,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunOutcome:
    """Check the corpus once; see the module docstring for the shape of a run."""
    started = time.perf_counter()
    now = utcnow()
    stop = stop or asyncio.Event()
    stale = store.interrupt_stale_runs(
        engine, now=now, stale_after=timedelta(seconds=settings.jobs.lock_ttl_seconds)
    )
    for run_id in stale:
        log.warning("run.interrupted", run_id=run_id, reason="found unfinished at start-up")

    inventory: SyncReport | None = None
    run_id = store.latest_interrupted(engine) if resume else None
    if run_id is not None:
        store.reopen_run(engine, run_id, now)
        trigger = "resume"
    else:
        run_id = store.create_run(engine, trigger=trigger, fingerprint=settings.fingerprint(), now=now)
    # run_id is bound explicitly (not only via contextvars) so every event carries it wherever it goes
    rlog = log.bind(run_id=run_id)
    structlog.contextvars.bind_contextvars(run_id=run_id)
    try:
        if not only_failing:  # a resumed run too: it may have died inside this pass (it is incremental)
            # incremental, so a pass cut by a lost connection is simply run again
            inventory = await write_with_retry(
                lambda: sync_inventory(engine, settings.corpus, paths), what="the inventory"
            )
            for err in inventory.errors:
                rlog.warning(
                    "corpus.error",
                    path=err.path,
                    kind=err.kind,
                    message=err.message,
                    line=err.line,
                    column=err.column,
                )
        # adaptive freshness (off unless jobs.stale_after_days is set): scheduled runs skip
        # URLs that were healthy and checked recently enough for their role
        fresh = (
            store.freshness_cutoffs(settings.jobs.stale_after_days, now) if trigger == "schedule" else None
        )
        total = store.count_plan(engine, run_id=run_id, only_failing=only_failing, stale_before=fresh)
        store.set_total(engine, run_id, total)
        rlog.info("run.started", trigger=trigger, targets=total, config_fingerprint=settings.fingerprint())
        try:
            events, cut_short = await _execute(
                settings, engine, run_id, only_failing, stop, total, on_progress, fresh
            )
        except BaseException as exc:
            state = "interrupted" if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) else "failed"
            try:
                store.finish_run(
                    engine, run_id, state=state, now=utcnow(), error=f"{type(exc).__name__}: {exc}"
                )
            except Exception as db_exc:  # the database itself may be what failed; the next start repairs it
                rlog.error("run.unrecorded", error=f"{type(db_exc).__name__}: {db_exc}")
            rlog.error(
                "run.failed" if state == "failed" else "run.interrupted", error=f"{type(exc).__name__}: {exc}"
            )
            raise
        state = "interrupted" if cut_short else "finished"
        counts = store.finish_run(engine, run_id, state=state, now=utcnow())
        by_verdict, by_severity = store.run_counts(engine, run_id)
        events = alerts.group_host_down(events, settings.alerts.host_down_threshold)
        for name, keys in events:
            rlog.warning(name, **keys)
        outcome = RunOutcome(
            run_id=run_id,
            state=state,
            total=total,
            checked=sum(counts.values()),
            counts=by_verdict,
            severities=by_severity,
            duration_s=time.perf_counter() - started,
            inventory=inventory,
            events=events,
        )
        rlog.info(
            "run.finished" if state == "finished" else "run.interrupted",
            counts=by_verdict,
            checked=outcome.checked,
            errors=outcome.errors,
            warnings=outcome.warnings,
            duration_s=round(outcome.duration_s, 3),
        )
        return outcome
    finally:
        structlog.contextvars.unbind_contextvars("run_id")


async def _execute(
    settings: Settings,
    engine: Engine,
    run_id: int,
    only_failing: bool,
    stop: asyncio.Event,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    fresh: dict[str, datetime] | None,
) -> tuple[list[alerts.Event], bool]:
    """Check the run's targets here, or in several processes (``http.processes``); (events, cut short)."""
    parts = processes.process_count(settings.http, total)
    if parts > 1:
        counts = store.count_plan_by_host(
            engine, run_id=run_id, only_failing=only_failing, stale_before=fresh
        )
        groups = processes.split_hosts(counts, parts)
        if len(groups) > 1:
            log.info("run.processes", run_id=run_id, processes=len(groups))
            return await processes.check_in_processes(
                settings,
                engine,
                run_id,
                groups,
                only_failing=only_failing,
                stale_before=fresh,
                stop=stop,
                total=total,
                on_progress=on_progress,
            )
    runner = _Run(settings, engine, run_id, only_failing, stop, total, on_progress, fresh)
    await runner.execute()
    return runner.events, runner.cut_short


class _HostQueue:
    """The run's loaded targets per host, handed out round-robin within each host's limit.

    ``take`` gives the next target of a host with work and a free slot (None if there is
    none now); ``release`` frees the slot and wakes one idle worker; ``low`` asks the loader
    for another page. All on the event loop, so no locks.
    """

    def __init__(self, limiter: HostLimiter) -> None:
        self._limiter = limiter
        self._pending: dict[str, deque[store.Planned]] = {}
        self._ring: deque[str] = deque()  # hosts with pending targets
        self._busy: Counter[str] = Counter()
        self._limits: dict[str, int] = {}
        self._idle: deque[asyncio.Future[None]] = deque()
        self.buffered = 0
        self.exhausted = False
        self.low = asyncio.Event()
        self.low.set()

    @property
    def finished(self) -> bool:
        """Nothing left to take, now or later."""
        return self.exhausted and self.buffered == 0

    def add(self, page: Sequence[store.Planned], *, last: bool) -> None:
        for item in page:
            host = item.target.host
            queue = self._pending.get(host)
            if queue is None:
                queue = self._pending[host] = deque()
                self._limits[host] = self._limiter.policy(host).concurrency  # one lookup rule
            if not queue:
                self._ring.append(host)
            queue.append(item)
        self.buffered += len(page)
        self.exhausted = last
        if self.buffered >= PAGE or last:
            self.low.clear()
        if last:
            self.wake_all()  # idle workers may end now
        else:
            for _ in range(min(len(page), len(self._idle))):
                self._wake_one()

    def take(self) -> store.Planned | None:
        ring = self._ring
        for _ in range(len(ring)):
            host = ring[0]
            ring.rotate(-1)  # the host is now last: the next take starts with the one after it
            if self._busy[host] < self._limits[host]:
                queue = self._pending[host]
                item = queue.popleft()
                if not queue:
                    ring.pop()  # this host, in O(1) (a corpus may have a host per URL)
                self._busy[host] += 1
                self.buffered -= 1
                if self.buffered < PAGE and not self.exhausted:
                    self.low.set()
                elif self.finished:
                    self.wake_all()  # the last target is out: idle workers end
                return item
        return None

    def release(self, item: store.Planned) -> None:
        self._busy[item.target.host] -= 1
        self._wake_one()

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


class _Run:
    """Dispatcher + single writer for one run."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        run_id: int,
        only_failing: bool,
        stop: asyncio.Event,
        total: int,
        on_progress: Callable[[int, int], None] | None,
        stale_before: dict[str, datetime] | None = None,
        *,
        hosts: Sequence[str] | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> None:
        self.settings = settings
        self.stale_before = stale_before
        self.hosts = hosts  # only these hosts' targets (one process's or one shard's share of a run)
        self.id_range = id_range  # and only these url ids (a slice of a giant host's shard)
        self.request_gate: Callable[[], Awaitable[None]] | None = None  # awaited before every request
        self.engine = engine
        self.run_id = run_id
        self.only_failing = only_failing
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
            async with Fetcher(self.settings.http, self.settings.safety, gate=self.request_gate) as fetcher:
                await self._dispatch(fetcher)
        finally:
            if not writer.done():
                await self._emit(None)
            await writer  # re-raises a writer failure (e.g. the database refused a batch)

    async def _load(self, after_id: int) -> list[store.Planned]:
        def page() -> list[store.Planned]:
            with self.engine.connect() as conn:
                return store.plan_page(
                    conn,
                    run_id=self.run_id,
                    after_id=after_id,
                    limit=PAGE,
                    only_failing=self.only_failing,
                    stale_before=self.stale_before,
                    hosts=self.hosts,
                    id_range=self.id_range,
                )

        return await asyncio.to_thread(page)

    async def _dispatch(self, fetcher: Fetcher) -> None:
        """``concurrency`` workers fetch one target after another; finished results go to the writer.

        A worker sends its next request in the same event-loop step in which it finished the
        last one (no task per URL, no dispatcher hop between an answer and the next request),
        taking targets round-robin from the hosts that have work and a free slot, so a busy host
        never holds a worker another host could use. On stop, requests in flight get
        ``shutdown_grace_seconds`` to finish; what is cut has no result and a resume redoes it.
        """
        queue = _HostQueue(fetcher.limiter)
        loader = asyncio.create_task(self._feed(queue))
        workers = {asyncio.create_task(self._work(fetcher, queue)) for _ in range(self.concurrency)}
        stop_wait = asyncio.create_task(self.stop.wait())
        try:
            running, watched = set(workers), {stop_wait, loader}
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
            loader.cancel()
            for task in workers:
                task.cancel()
            await asyncio.gather(loader, *workers, return_exceptions=True)

    async def _feed(self, queue: _HostQueue) -> None:
        """Load plan pages whenever the queue runs low, until the plan is exhausted."""
        after_id = 0
        while True:
            await queue.low.wait()
            page = await self._load(after_id)
            queue.add(page, last=len(page) < PAGE)
            if len(page) < PAGE:
                return
            after_id = page[-1].url_id

    async def _work(self, fetcher: Fetcher, queue: _HostQueue) -> None:
        while not self.stop.is_set():
            item = queue.take()
            if item is None:
                if queue.finished:
                    return
                await queue.wait()
                continue
            try:
                outcome = await fetcher.fetch_unshared(item.target)
            except Exception as exc:  # a bug inside fetch becomes a visible failure, not a lost URL
                outcome = _internal_error(item.target, exc)
            finally:
                queue.release(item)
            await self._emit((item, outcome))

    async def _emit(self, item: tuple[store.Planned, FetchOutcome] | None) -> None:
        """Hand a result (None: the end) to the writer; wait while it is too far behind.

        If the writer died, raise its error rather than wait for ever.
        """
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


async def write_with_retry(write: Callable[[], T], *, what: str) -> T:
    """Run a database write in a thread, retrying when the connection was lost.

    A batch is one transaction, so a write cut by a dropped connection (a PostgreSQL
    restart, a terminated backend) rolled back whole and can simply be written again;
    result rows are ON CONFLICT DO NOTHING besides. Other database errors (disk full,
    constraint violations) stop the run with a clear message.
    """
    for attempt in range(1, DB_RETRIES + 1):
        try:
            return await asyncio.to_thread(write)
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == DB_RETRIES:
                raise StoreError(f"cannot write {what} to the database: {_db_message(exc)}") from exc
            log.warning("db.reconnect", attempt=attempt, error=_db_message(exc))
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable")


def _db_message(exc: DBAPIError) -> str:
    text = str(exc.orig or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _internal_error(target: Target, exc: Exception) -> FetchOutcome:
    """A bug inside fetch, logged and recorded as a protocol failure of this URL."""
    log.error("fetch.bug", url=target.url, error=f"{type(exc).__name__}: {exc}")
    return FetchOutcome(
        url=target.url, failure=FetchFailure.PROTOCOL, failure_detail=f"internal error: {exc}"
    )


def _facts_from_previous(outcome: FetchOutcome, prev: dict[str, object]) -> FetchOutcome:
    """A 304 keeps the previous run's facts, marked not-modified."""
    width, height = prev.get("image_width"), prev.get("image_height")
    image = None
    if prev.get("image_format") or width is not None:
        size = Size(int(width), int(height)) if width is not None and height is not None else None  # type: ignore[arg-type]
        image = ImageFacts(format=prev.get("image_format"), size=size)  # type: ignore[arg-type]
    hops = tuple(Hop(str(u), int(s), loc) for u, s, loc in json.loads(str(prev.get("redirects") or "[]")))
    return FetchOutcome(
        url=outcome.url,
        status=int(prev["http_status"]) if prev.get("http_status") is not None else outcome.status,  # type: ignore[call-overload]
        final_url=prev.get("final_url") or outcome.final_url,  # type: ignore[arg-type]
        redirects=hops,
        attempts=outcome.attempts,
        elapsed_ms=outcome.elapsed_ms,
        method=outcome.method,
        content_type=prev.get("content_type") or outcome.content_type,  # type: ignore[arg-type]
        bytes_read=outcome.bytes_read,
        headers=outcome.headers,
        image=image,
        not_modified=True,
        etag=outcome.etag,
        last_modified=outcome.last_modified,
    )


def _judge(
    target: Target,
    outcome: FetchOutcome,
    prev: dict[str, object] | None,
    roles: frozenset[Role],
    settings: Settings,
) -> tuple[FetchOutcome, Judgement]:
    """Classify an outcome; a 304 keeps the previous verdict and facts (severity follows today's policy)."""
    if outcome.not_modified and prev is not None:
        verdict = Verdict(str(prev["verdict"]))
        reason = str(prev["reason"]).removesuffix(NOT_MODIFIED)
        severity = severity_for(verdict, roles, target.host, settings.verdicts)
        return _facts_from_previous(outcome, prev), Judgement(verdict, severity, reason + NOT_MODIFIED)
    return outcome, classify(target, outcome, settings.verdicts, roles)


class BatchGuard(Protocol):
    """Hooks into a batch's transaction (a distributed shard fences its writes and stores its events)."""

    def before(self, conn: Connection) -> None:
        """Runs first in the transaction; raising aborts the batch (nothing is written)."""

    def after(self, conn: Connection, events: list[alerts.Event], written: int) -> None:
        """Runs last in the transaction, with the batch's alert events."""


def save_results(
    engine: Engine,
    settings: Settings,
    run_id: int,
    batch: Sequence[tuple[store.Planned, FetchOutcome]],
    guard: BatchGuard | None = None,
) -> list[alerts.Event]:
    """Judge one batch of outcomes and write results, size checks and URL state in one transaction."""
    now = utcnow()
    ids = [p.url_id for p, _ in batch]
    events: list[alerts.Event] = []
    rows = store.BatchWrite([], [], [], [])
    with engine.begin() as conn:
        if guard is not None:
            guard.before(conn)
        occs = store.occurrences_for(conn, ids)
        states = store.states_for(conn, ids)
        not_modified = [p.url_id for p, o in batch if o.not_modified]
        prevs = store.previous_results(conn, not_modified, run_id) if not_modified else {}
        for planned, raw in batch:
            uid = planned.url_id
            here = occs.get(uid, [])
            roles = frozenset(o.role for o in here)
            target = Target(
                url=planned.target.url,
                host=planned.target.host,
                kind=planned.target.kind,
                roles=roles,
                etag=planned.target.etag,
                last_modified=planned.target.last_modified,
            )
            outcome, judgement = _judge(target, raw, prevs.get(uid), roles, settings)
            result = CheckResult(target, outcome, judgement)
            rows.results.append(_result_row(run_id, uid, result, now))
            occ_dicts = [{"article": o.article, "location": o.location} for o in here]
            actual = outcome.image.size if outcome.image else None
            if target.kind is TargetKind.IMAGE:
                for occ in here:
                    if not occ.role.is_image:
                        continue
                    check = size_check(occ.declared, actual, settings.images)
                    rows.size_checks.append(
                        {
                            "run_id": run_id,
                            "occurrence_id": occ.id,
                            "url_id": uid,
                            "verdict": check.value,
                            "declared_width": occ.declared.width if occ.declared else None,
                            "declared_height": occ.declared.height if occ.declared else None,
                            "actual_width": actual.width if actual else None,
                            "actual_height": actual.height if actual else None,
                        }
                    )
                    if check is SizeCheck.SIZE_MISMATCH:
                        events.append(
                            alerts.size_mismatch_event(
                                target.url, occ.article, occ.location, occ.declared, actual, check
                            )
                        )
            state = states.get(uid)
            update, transition_events = _advance(uid, state, result, occ_dicts, settings, now, run_id)
            rows.url_updates.append(update)
            events.extend(transition_events)
            if state is not None and transition_events:
                rows.state_changes.extend(
                    {
                        "run_id": run_id,
                        "url_id": uid,
                        "at": now,
                        "from_state": state.alert_state,
                        "to_state": update["alert_state"],
                    }
                    for name, _ in transition_events
                    if name in ("link.broken", "link.recovered", "link.flapping")
                )
            if judgement.verdict is Verdict.MOVED_PERMANENTLY and (
                state is None or state.last_verdict != "moved_permanently"
            ):
                events.append(alerts.moved_event(target.url, outcome.final_url or target.url, occ_dicts))
        store.write_batch(conn, run_id, rows, now)
        if guard is not None:
            guard.after(conn, events, len(rows.results))
    return events


def _result_row(run_id: int, url_id: int, result: CheckResult, now: datetime) -> dict[str, object]:
    o, j = result.outcome, result.judgement
    size = o.image.size if o.image else None
    return {
        "run_id": run_id,
        "url_id": url_id,
        "checked_at": now,
        "verdict": j.verdict.value,
        "severity": j.severity.value,
        "reason": j.reason,
        "http_status": o.status,
        "final_url": redact_url(o.final_url) if o.final_url else None,
        "redirects": json.dumps(
            [[redact_url(h.url), h.status, h.location and redact_url(h.location)] for h in o.redirects]
        )
        if o.redirects
        else None,
        "attempts": o.attempts,
        "elapsed_ms": o.elapsed_ms,
        "method": o.method,
        "content_type": (o.content_type or None) and o.content_type[:200],
        "bytes_read": o.bytes_read,
        "failure": o.failure.value if o.failure else None,
        "image_format": o.image.format if o.image else None,
        "image_width": size.width if size else None,
        "image_height": size.height if size else None,
        "not_modified": o.not_modified,
    }


def _advance(
    url_id: int,
    state: store.UrlState | None,
    result: CheckResult,
    occurrences: list[dict[str, str]],
    settings: Settings,
    now: datetime,
    run_id: int,
) -> tuple[dict[str, object], list[alerts.Event]]:
    """The URL's new current state and the alert events its transition (if any) fires."""
    j, o = result.judgement, result.outcome
    prev = state or store.UrlState(url_id, 0, 0, None, None, "ok", 0, 0, "", None)
    failing = j.verdict.is_failure
    good = j.verdict.is_good
    alert_prev = alerts.AlertState(prev.alert_state, prev.alert_failures, prev.alert_successes, prev.recent)  # type: ignore[arg-type]
    new_alert, transition = alerts.step(alert_prev, j.verdict, j.severity, settings.alerts)
    failing_since = (prev.failing_since or now) if failing else None
    update: dict[str, object] = {
        "b_id": url_id,
        "last_checked": now,
        "last_run_id": run_id,
        "last_verdict": j.verdict.value,
        "last_severity": j.severity.value,
        "last_status": o.status,
        "last_ok": now if good else prev.last_ok,
        "failing_since": failing_since,
        "consecutive_failures": prev.consecutive_failures + 1 if failing else 0,
        "consecutive_successes": prev.consecutive_successes + 1 if good else 0,
        "etag": o.etag if o.etag is not None or not o.not_modified else None,
        "last_modified": o.last_modified,
        "alert_state": new_alert.state,
        "alert_failures": new_alert.consecutive_failures,
        "alert_successes": new_alert.consecutive_successes,
        "recent": new_alert.recent,
    }
    if o.not_modified:  # a 304 may omit validators: keep the ones we sent
        update["etag"] = o.etag or result.target.etag
        update["last_modified"] = o.last_modified or result.target.last_modified
    events: list[alerts.Event] = []
    if transition is not None:
        events.append(
            alerts.link_event(
                transition,
                result.target.url,
                judgement=j,
                state=new_alert,
                settings=settings.alerts,
                host=result.target.host,
                http_status=o.status,
                occurrences=occurrences,
                since=failing_since or prev.failing_since,
                down_for_runs=prev.consecutive_failures if transition == "recovered" else None,
            )
        )
    return update, events
