"""A distributed run's life: start (inventory, plan, shards, jobs), fan-in finalization, progress.

One run at a time: the planner takes the existing ``corpus-check`` lease under a holder name
of the run's own (not a process), and workers renew it while the run lives, so a local
``monitor check`` or a second planner anywhere is refused until the run is finalized — and
a fleet that vanished frees it after ``jobs.lock_ttl_seconds``.

Finalization is decided by one conditional UPDATE (``state='running'`` → final), so a
completion retried, a reaper and a last shard racing each other finalize exactly once; an
operator's ``monitor runs RUN_ID --fail`` goes through the same UPDATE.

Alert events are delivered at least once: the batches keep them in the ``run_event``
outbox, and whoever emits them (the finalizer, else any drain) logs them and marks the run
``alerts_emitted_at`` in one transaction, each with a stable ``event_id`` to dedupe on.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, func, select, text, update

from monitor import alerts
from monitor.config import Settings
from monitor.distributed import ledger, queue
from monitor.fetch.hosts import HostLimiter
from monitor.run import shards
from monitor.run.archive import archive_lease, suggest_archived_blocking
from monitor.run.check import RunOutcome, checked_roots
from monitor.run.inventory import SyncReport, sync_inventory
from monitor.store import lease, results
from monitor.store import runs as store
from monitor.store.tables import LEASES, RUN_FANOUT, RUNS
from reports.files import write_pending_reports, write_run_reports

log = structlog.get_logger("monitor.distributed")
EMIT_IDLE_LIMIT = "10min"  # longest pause PostgreSQL allows an alert emitter holding its claim
REPORT_RETRY_SECONDS = 600.0  # a drain retries a run whose report files failed after this long


def _now() -> datetime:
    return datetime.now(UTC)


def run_holder() -> str:
    """Lease holder naming the run, not a process (no ``host:pid``, so no process death frees it)."""
    return f"distributed@{socket.gethostname()}#{uuid.uuid4().hex[:12]}"


async def take_lease(engine: Engine, settings: Settings, holder: str, wait: float | None) -> None:
    """Take the corpus-check lease for the run, or raise LeaseBusy (waiting up to ``wait`` seconds)."""
    ttl = settings.jobs.lock_ttl_seconds
    deadline = time.monotonic() + (wait or 0)
    while not await asyncio.to_thread(lease.acquire, engine, lease.CORPUS_CHECK, holder, ttl):
        if time.monotonic() >= deadline:
            seen = await asyncio.to_thread(lease.current, engine, lease.CORPUS_CHECK)
            raise lease.LeaseBusy(lease.CORPUS_CHECK, *(seen or ("unknown", None)))
        await asyncio.sleep(lease.POLL_S)


async def start_run(
    settings: Settings,
    engine: Engine,
    *,
    paths: Sequence[str] | None = None,
    trigger: str = "cli",
    only_failing: bool = False,
    wait: float | None = None,
) -> tuple[int, int, int, SyncReport | None]:
    """Plan a run and queue one job per shard; returns (run id, shards, targets, inventory report)."""
    queue.require_postgres(settings)
    roots = checked_roots(settings, paths)  # a missing root fails before the lease and any run row
    await asyncio.to_thread(queue.ensure_schema, settings)
    holder = run_holder()
    await take_lease(engine, settings, holder, wait)
    try:
        stale = await asyncio.to_thread(
            store.interrupt_stale_runs, engine, now=_now(), stale_after=timedelta(0)
        )
        for run_id in stale:
            log.warning("run.interrupted", run_id=run_id, reason="found unfinished when taking the lock")
        await asyncio.to_thread(deliver_pending, settings, engine)  # alerts of runs whose emitter died
        inventory = None
        began = time.perf_counter()
        if not only_failing:
            inventory = await asyncio.to_thread(sync_inventory, engine, settings.corpus, roots)
        planning = time.perf_counter()
        run_id, planned, total = await asyncio.to_thread(
            plan_run, settings, engine, holder, trigger, only_failing, roots
        )
        planned_at = time.perf_counter()
    except BaseException:
        await asyncio.to_thread(lease.release, engine, lease.CORPUS_CHECK, holder)
        raise
    d = settings.distributed
    app = queue.build_app(settings, pool_size=2)
    async with app.open_async():
        for shard_id in planned:
            await queue.defer_shard(app, d.queue, run_id, shard_id, None)
    log.info(
        "run.started",
        run_id=run_id,
        trigger=trigger,
        targets=total,
        shards=len(planned),
        executor="procrastinate",
        inventory_s=round(planning - began, 3),
        plan_s=round(planned_at - planning, 3),
        enqueue_s=round(time.perf_counter() - planned_at, 3),
    )
    if not planned:
        await asyncio.to_thread(finalize, settings, engine, run_id)
    return run_id, len(planned), total, inventory


def plan_run(
    settings: Settings,
    engine: Engine,
    holder: str,
    trigger: str,
    only_failing: bool,
    roots: Sequence[str] | None = None,
) -> tuple[int, list[int], int]:
    """Create the run, its shards and its fan-in row in one transaction (all or nothing);
    ``roots`` scope its plan (None: the whole inventory)."""
    d = settings.distributed
    run_id = store.create_run(
        engine, trigger=trigger, fingerprint=settings.fingerprint(), now=_now(), roots=roots
    )
    with engine.begin() as conn:
        counts = ledger.host_counts(conn, run_id, only_failing)
        policies = HostLimiter.from_settings(settings.http)
        specs = shards.plan(
            counts,
            d.shard_size,
            d.host_split_threshold,
            concurrency=settings.http.concurrency,
            per_host=settings.http.per_host_concurrency,
            limits={h: policies.policy(h).concurrency for h in counts},
            spaced={h for h in counts if policies.policy(h).min_interval > 0},
            shards_at_once=d.worker_concurrency,
        )
        slices: dict[str, list[int]] = {}
        for s in sorted((s for s in specs if s.part is not None), key=lambda s: s.part or 0):
            slices.setdefault(s.hosts[0], []).append(s.url_count)
        bounds = {h: ledger.slice_bounds(conn, run_id, h, sizes, only_failing) for h, sizes in slices.items()}
        planned = ledger.create_shards(conn, run_id, specs, bounds)
        ledger.create_fanout(conn, run_id, d.queue, len(planned), only_failing, holder)
        total = sum(counts.values())
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(total_targets=total, holder=holder))
    return run_id, planned, total


def _close(conn: Connection, run_id: int, state: str, error: str | None, lease_holder: str) -> bool:
    """End a running run: state, verdict counts, who closed it, its lease freed; False if it had ended.

    The conditional UPDATE decides: of a finalizer, a reaper and an operator's ``--fail``
    racing, exactly one closes the run.
    """
    won = conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, RUNS.c.state == "running")
        .values(state=state, finished_at=func.now(), error=error)
    )
    if won.rowcount != 1:
        return False
    counts = store.verdict_counts(conn, run_id)
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(counts=json.dumps(counts, sort_keys=True), checked=sum(counts.values()))
    )
    conn.execute(
        update(RUN_FANOUT).where(RUN_FANOUT.c.run_id == run_id).values(finalized_by=store.holder_id())
    )
    conn.execute(delete(LEASES).where(LEASES.c.name == lease.CORPUS_CHECK, LEASES.c.holder == lease_holder))
    conn.execute(delete(LEASES).where(LEASES.c.name == archive_lease(run_id)))
    return True


def finalize(settings: Settings, engine: Engine, run_id: int) -> RunOutcome | None:
    """Close a run whose shards all completed; None when someone else already did (or it ended otherwise).

    The state flip, verdict counts and lease release are one transaction; the alert events
    (the batches' outbox rows, grouped as the local run groups them) are emitted after it
    by ``deliver_alerts``, which survives a crash in between, and report files follow. The archived
    copies of the dead pages are looked up first, while the run still shows as running, so a
    ``check --wait-run`` report has them too, by the one finalizer that holds the run's archive
    lease (``archive.suggest_archived_blocking``); the others leave the run to it.
    """
    with engine.connect() as conn:
        fan = ledger.fanout(conn, run_id)
        running = conn.execute(select(RUNS.c.state).where(RUNS.c.id == run_id)).scalar() == "running"
    complete = running and fan is not None and fan.shard_done == fan.shard_total
    if complete and not suggest_archived_blocking(settings, engine, run_id):
        return None  # another finalizer is looking archived copies up; it closes the run
    with engine.begin() as conn:
        fan = ledger.fanout(conn, run_id)
        if fan is None or fan.shard_done + fan.shard_failed < fan.shard_total:
            return None
        state = "failed" if fan.shard_failed else "finished"
        error = f"{fan.shard_failed} of {fan.shard_total} shards failed" if fan.shard_failed else None
        if not _close(conn, run_id, state, error, fan.lease_holder):
            return None
        results.mark_placeholders(conn, run_id, settings.images.placeholder_min_uses)
        run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
    try:
        events = deliver_alerts(settings, engine, run_id)
    except Exception as exc:  # the run is closed whatever happens here: the next drain emits them
        log.warning("run.alerts_deferred", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        events = None
    if events is None:
        with engine.connect() as conn:
            events = alert_events(run_id, ledger.run_events(conn, run_id), settings)
    by_verdict, by_severity = store.run_counts(engine, run_id)
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    with engine.connect() as conn:
        spans = timeline(run.started_at, run.finished_at, ledger.shards_of(conn, run_id))
    log.info("run.finalized", run_id=run_id, state=state, counts=by_verdict, checked=run.checked, **spans)
    if state == "finished" and run.trigger == "schedule":
        write_run_reports(engine, settings.reports, run_id)
    return RunOutcome(
        run_id=run_id,
        state=state,
        total=run.total_targets,
        checked=run.checked,
        counts=by_verdict,
        severities=by_severity,
        duration_s=duration,
        events=events,
    )


def alert_events(
    run_id: int, rows: Sequence[tuple[int, str, dict[str, Any]]], settings: Settings
) -> list[alerts.Event]:
    """The run's alert events as a local run groups them, each with a stable ``event_id``.

    An outbox row's id is ``"<run>:<row id>"``; a ``host.down`` standing for a host's
    ``link.broken`` rows is ``"<run>:host.down:<host>"``. Re-emitting after a crash gives
    the same ids, so a log pipeline can drop the duplicates.
    """
    keyed = [(name, {**keys, "event_id": f"{run_id}:{row_id}"}) for row_id, name, keys in rows]
    grouped = alerts.group_host_down(keyed, settings.alerts.host_down_threshold)
    return [
        (name, keys if "event_id" in keys else {**keys, "event_id": f"{run_id}:{name}:{keys['host']}"})
        for name, keys in grouped
    ]


def emit_alerts(run_id: int, events: Sequence[alerts.Event]) -> None:
    """Log each alert event of a run: where a distributed run turns its events into alerts."""
    for name, keys in events:
        log.warning(name, run_id=run_id, **keys)


def deliver_alerts(settings: Settings, engine: Engine, run_id: int) -> list[alerts.Event] | None:
    """Emit an ended run's alert events once and mark them emitted; None when there was nothing to do.

    Logging happens inside the transaction that holds the claim and records the emission,
    so a crash before the commit leaves the events unmarked and unlocked: they are emitted
    again (at least once, same ``event_id``), never lost.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # logging a big night's events may outlast a worker's stall limit (the session's idle
            # timeout); a frozen emitter is still cut off, later, and its events emitted again
            conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{EMIT_IDLE_LIMIT}'"))
        if not ledger.claim_alerts(conn, run_id):
            return None
        events = alert_events(run_id, ledger.run_events(conn, run_id), settings)
        emit_alerts(run_id, events)
        ledger.mark_alerts_emitted(conn, run_id)
    log.info("run.alerts_emitted", run_id=run_id, events=len(events))
    return events


def deliver_pending(settings: Settings, engine: Engine) -> int:
    """Emit the alerts of every ended run whose emitter died, and write the report files of every
    finished scheduled run whose finalizer died before writing them (workers' reapers, the next
    planner); returns the number of alert events emitted."""
    emitted = 0
    for run_id in ledger.undelivered_runs(engine):
        events = deliver_alerts(settings, engine, run_id)
        emitted += len(events or ())
    write_pending_reports(engine, settings.reports, hold_off=REPORT_RETRY_SECONDS)
    return emitted


class NotRunning(Exception):
    """``monitor runs RUN_ID --fail`` on a run that cannot be failed (unknown, local, already ended)."""


@dataclass(frozen=True, slots=True)
class Abandoned:
    """What failing a run by hand did."""

    run_id: int
    shards_cancelled: int
    jobs_cancelled: int


def fail_run(settings: Settings, engine: Engine, run_id: int, reason: str) -> tuple[list[int], str]:
    """Mark a running distributed run failed and cancel its unfinished shards, in one transaction.

    Returns (cancelled shard ids, the run's queue). Raises NotRunning, leaving everything
    as it was, when the run is unknown, local, or no longer running — including when the
    last shard's finalizer wins the race.
    """
    with engine.begin() as conn:
        state = conn.execute(select(RUNS.c.state).where(RUNS.c.id == run_id)).scalar_one_or_none()
        if state is None:
            raise NotRunning(f"no run {run_id}")
        if state != "running":
            raise NotRunning(f"run {run_id} is not running (it is {state}); nothing to fail")
        fan = ledger.fanout(conn, run_id)
        if fan is None:
            raise NotRunning(f"run {run_id} is a local run: stop its `monitor check` process instead")
        # a worker frozen inside a batch holds its shard row until PostgreSQL ends its session
        wait_ms = int(max(10.0, 2 * settings.distributed.stall_seconds) * 1000)
        conn.execute(text(f"SET LOCAL lock_timeout = '{wait_ms}ms'"))
        cancelled = ledger.cancel_shards(conn, run_id, f"run failed by hand: {reason}")
        if not _close(conn, run_id, "failed", reason, fan.lease_holder):
            raise NotRunning(f"run {run_id} ended meanwhile; nothing to fail")
    return cancelled, str(fan.queue)


async def abandon_run(settings: Settings, engine: Engine, run_id: int, reason: str) -> Abandoned:
    """``monitor runs RUN_ID --fail``: fail the run, drop its queued jobs, log ``run.abandoned``.

    Dropping the jobs only tidies the queue (a worker would claim nothing and skip them),
    so it is best effort. The events of batches committed before the fail stay in the
    outbox and are emitted by the next drain (a worker's reaper, the next planner).
    """
    cancelled, queue_name = await asyncio.to_thread(fail_run, settings, engine, run_id, reason)
    jobs = 0
    try:
        app = queue.build_app(settings, pool_size=1)
        async with app.open_async():
            jobs = await queue.cancel_run_jobs(app, queue_name, run_id)
    except Exception as exc:
        log.warning("queue.cancel_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
    log.warning(
        "run.abandoned",
        run_id=run_id,
        error=reason,
        by=store.holder_id(),
        shards_cancelled=len(cancelled),
        jobs_cancelled=jobs,
    )
    return Abandoned(run_id, len(cancelled), jobs)


def renew_run_leases(engine: Engine, settings: Settings) -> None:
    """Keep the corpus-check lease of every live distributed run (any worker or waiter does this)."""
    with engine.connect() as conn:
        holders = (
            conn.execute(
                select(RUN_FANOUT.c.lease_holder)
                .join(RUNS, RUNS.c.id == RUN_FANOUT.c.run_id)
                .where(RUNS.c.state == "running")
            )
            .scalars()
            .all()
        )
    for holder in holders:
        lease.renew(engine, lease.CORPUS_CHECK, holder, settings.jobs.lock_ttl_seconds)


async def wait_run(engine: Engine, settings: Settings, run_id: int, on_progress: Any = None) -> str:
    """Block until the run leaves 'running' (renewing its lease meanwhile); returns its final state.

    The state (one indexed row) is read every quarter second, so the caller learns of the end
    soon after it; the lease and the progress (every shard row) only once a second.
    """
    every = min(1.0, settings.distributed.heartbeat_seconds)
    look = min(0.25, every)
    last = -math.inf
    while True:
        state = await asyncio.to_thread(store.run_state, engine, run_id)
        if state != "running":
            return state
        if time.monotonic() - last >= every:
            last = time.monotonic()
            await asyncio.to_thread(renew_run_leases, engine, settings)
            if on_progress is not None:
                on_progress(await asyncio.to_thread(progress, engine, run_id))
        await asyncio.sleep(look)


def timeline(started: datetime, finished: datetime | None, shards: Sequence[Any]) -> dict[str, float]:
    """Where a distributed run's time went after planning, from its shard rows (seconds).

    ``pickup_s``: from the run row to the first shard start (queue latency); ``checking_s``:
    first shard start to last shard end; ``longest_shard_s``: the shard that set the pace;
    ``fanin_s``: last shard end to the run's close. Empty until a shard has started.
    """
    ran = [(s.started_at, s.finished_at) for s in shards if s.started_at is not None]
    if not ran:
        return {}
    first = min(a for a, _ in ran)
    ends = [b for _, b in ran if b is not None]
    out = {"pickup_s": round((first - started).total_seconds(), 3)}
    if ends:
        last = max(ends)
        out["checking_s"] = round((last - first).total_seconds(), 3)
        out["longest_shard_s"] = round(max((b - a).total_seconds() for a, b in ran if b is not None), 3)
        if finished is not None:
            out["fanin_s"] = round((finished - last).total_seconds(), 3)
    return out


def progress(engine: Engine, run_id: int) -> dict[str, Any]:
    """Shards done/failed/running/queued, URLs checked and hand-backs of one run."""
    with engine.connect() as conn:
        run = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).one()
        rows = ledger.shards_of(conn, run_id)
        now = ledger.db_now(conn)
    by_state: dict[str, int] = {}
    for s in rows:
        by_state[s.state] = by_state.get(s.state, 0) + 1
    return {
        "run_id": run_id,
        "state": run.state,
        "trigger": run.trigger,
        "started_at": run.started_at,
        "targets": run.total_targets,
        "checked": sum(s.checked for s in rows) if rows else run.checked,
        "shards": len(rows),
        "by_state": by_state,
        "requeues": sum(s.requeues for s in rows),
        "shard_rows": rows,
        "now": now,
        "timeline": timeline(run.started_at, run.finished_at, rows),
    }
