"""A distributed run's life: start (inventory, plan, shards, jobs), fan-in finalization, progress.

One run at a time: the planner takes the existing ``corpus-check`` lease under a holder name
of the run's own (not a process), and workers renew it while the run lives, so a local
``monitor check`` or a second planner anywhere is refused until the run is finalized — and
a fleet that vanished frees it after ``jobs.lock_ttl_seconds``.

Finalization is decided by one conditional UPDATE (``state='running'`` → final), so a
completion retried, a reaper and a last shard racing each other finalize exactly once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, delete, func, select, update

from monitor import alerts
from monitor.config import Settings
from monitor.distributed import ledger, queue, shards
from monitor.inventory import SyncReport, sync_inventory
from monitor.pipeline import RunOutcome
from monitor.store import lease
from monitor.store import results as store
from monitor.store.models import LeaseRow, RunRow

log = structlog.get_logger("monitor.distributed")
R = RunRow.__table__
L = LeaseRow.__table__


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
    await asyncio.to_thread(queue.ensure_schema, settings)
    holder = run_holder()
    await take_lease(engine, settings, holder, wait)
    try:
        stale = await asyncio.to_thread(
            store.interrupt_stale_runs, engine, now=_now(), stale_after=timedelta(0)
        )
        for run_id in stale:
            log.warning("run.interrupted", run_id=run_id, reason="found unfinished when taking the lock")
        inventory = None
        if not only_failing:
            inventory = await asyncio.to_thread(sync_inventory, engine, settings.corpus, paths)
        run_id, planned, total = await asyncio.to_thread(
            _plan, settings, engine, holder, trigger, only_failing
        )
    except BaseException:
        await asyncio.to_thread(lease.release, engine, lease.CORPUS_CHECK, holder)
        raise
    log.info(
        "run.started",
        run_id=run_id,
        trigger=trigger,
        targets=total,
        shards=len(planned),
        executor="procrastinate",
    )
    d = settings.distributed
    app = queue.build_app(settings, pool_size=2)
    async with app.open_async():
        for shard_id, lock in planned:
            await queue.defer_shard(app, d.queue, run_id, shard_id, lock)
    if not planned:
        await asyncio.to_thread(finalize, settings, engine, run_id)
    return run_id, len(planned), total, inventory


def _plan(
    settings: Settings, engine: Engine, holder: str, trigger: str, only_failing: bool
) -> tuple[int, list[tuple[int, str | None]], int]:
    """Create the run, its shards and its fan-in row in one transaction (all or nothing)."""
    d = settings.distributed
    run_id = store.create_run(engine, trigger=trigger, fingerprint=settings.fingerprint(), now=_now())
    with engine.begin() as conn:
        counts = ledger.host_counts(conn, run_id, only_failing)
        specs = shards.plan(counts, d.shard_size, d.host_split_threshold)
        bounds = {
            s.hosts[0]: ledger.slice_bounds(conn, run_id, s.hosts[0], s.parts, only_failing)
            for s in specs
            if s.parts is not None and s.part == 0
        }
        planned = ledger.create_shards(conn, run_id, specs, bounds)
        ledger.create_fanout(conn, run_id, d.queue, len(planned), only_failing, holder)
        total = sum(counts.values())
        conn.execute(update(R).where(R.c.id == run_id).values(total_targets=total, holder=holder))
    return run_id, planned, total


def finalize(settings: Settings, engine: Engine, run_id: int) -> RunOutcome | None:
    """Close a run whose shards all completed; None when someone else already did (or it ended otherwise).

    The state flip, verdict counts and lease release are one transaction; alert events (the
    batches' outbox rows, grouped as the local run groups them) and report files follow.
    """
    with engine.begin() as conn:
        fan = ledger.fanout(conn, run_id)
        if fan is None or fan.shard_done + fan.shard_failed < fan.shard_total:
            return None
        state = "failed" if fan.shard_failed else "finished"
        error = f"{fan.shard_failed} of {fan.shard_total} shards failed" if fan.shard_failed else None
        won = conn.execute(
            update(R)
            .where(R.c.id == run_id, R.c.state == "running")
            .values(state=state, finished_at=func.now(), error=error)
        )
        if won.rowcount != 1:
            return None
        res = store.RES
        counts = dict(
            conn.execute(
                select(res.c.verdict, func.count()).where(res.c.run_id == run_id).group_by(res.c.verdict)
            ).all()
        )
        conn.execute(
            update(R)
            .where(R.c.id == run_id)
            .values(counts=json.dumps(counts, sort_keys=True), checked=sum(counts.values()))
        )
        conn.execute(
            update(ledger.RF).where(ledger.RF.c.run_id == run_id).values(finalized_by=store.holder_id())
        )
        conn.execute(delete(L).where(L.c.name == lease.CORPUS_CHECK, L.c.holder == fan.lease_holder))
        raw_events = ledger.run_events(conn, run_id)
        run = conn.execute(select(R).where(R.c.id == run_id)).one()
    events = alerts.group_host_down(raw_events, settings.alerts.host_down_threshold)
    for name, keys in events:
        log.warning(name, run_id=run_id, **keys)
    by_verdict, by_severity = store.run_counts(engine, run_id)
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    log.info("run.finalized", run_id=run_id, state=state, counts=by_verdict, checked=sum(counts.values()))
    if state == "finished" and run.trigger == "schedule":
        from jobs.nightly import write_run_reports

        write_run_reports(engine, settings.reports, run_id)
    return RunOutcome(
        run_id=run_id,
        state=state,
        total=run.total_targets,
        checked=sum(counts.values()),
        counts=by_verdict,
        severities=by_severity,
        duration_s=duration,
        events=events,
    )


def renew_run_leases(engine: Engine, settings: Settings) -> None:
    """Keep the corpus-check lease of every live distributed run (any worker or waiter does this)."""
    with engine.connect() as conn:
        holders = (
            conn.execute(
                select(ledger.RF.c.lease_holder)
                .join(R, R.c.id == ledger.RF.c.run_id)
                .where(R.c.state == "running")
            )
            .scalars()
            .all()
        )
    for holder in holders:
        lease.renew(engine, lease.CORPUS_CHECK, holder, settings.jobs.lock_ttl_seconds)


def run_state(engine: Engine, run_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(R.c.state).where(R.c.id == run_id)).scalar_one())


async def wait_run(engine: Engine, settings: Settings, run_id: int, on_progress: Any = None) -> str:
    """Block until the run leaves 'running' (renewing its lease meanwhile); returns its final state."""
    while True:
        state = await asyncio.to_thread(run_state, engine, run_id)
        if state != "running":
            return state
        await asyncio.to_thread(renew_run_leases, engine, settings)
        if on_progress is not None:
            on_progress(await asyncio.to_thread(progress, engine, run_id))
        await asyncio.sleep(min(1.0, settings.distributed.heartbeat_seconds))


def progress(engine: Engine, run_id: int) -> dict[str, Any]:
    """Shards done/failed/running/queued, URLs checked and hand-backs of one run."""
    with engine.connect() as conn:
        run = conn.execute(select(R).where(R.c.id == run_id)).one()
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
    }


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def format_runs(engine: Engine, run_id: int | None, limit: int = 10) -> str:
    """The ``monitor runs`` text: recent runs with shard progress, or one run's shards in detail."""
    with engine.connect() as conn:
        ids = (
            [run_id]
            if run_id is not None
            else list(conn.execute(select(R.c.id).order_by(R.c.id.desc()).limit(limit)).scalars())
        )
    runs_rows = [("RUN", "STATE", "TRIGGER", "STARTED (UTC)", "SHARDS", "CHECKED", "REQUEUES")]
    shard_rows = [("SHARD", "STATE", "ATTEMPT", "CHECKED", "BEAT AGO", "WORKER", "HOSTS")]
    for rid in ids:
        p = progress(engine, rid)
        by_state = p["by_state"]
        shards_txt = "local"
        if p["shards"]:
            shards_txt = f"{by_state.get('done', 0)}/{p['shards']} done, {by_state.get('running', 0)} running"
            if by_state.get("failed"):
                shards_txt += f", {by_state['failed']} failed"
        started = p["started_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        runs_rows.append(
            (
                str(rid),
                p["state"],
                p["trigger"],
                started,
                shards_txt,
                f"{p['checked']}/{p['targets']}",
                str(p["requeues"]),
            )
        )
        for s in p["shard_rows"] if run_id is not None else []:
            ago = f"{(p['now'] - s.heartbeat_at).total_seconds():.0f}s" if s.heartbeat_at else "-"
            hosts = json.loads(s.hosts)
            where = ", ".join(hosts[:3]) + (f" +{len(hosts) - 3}" if len(hosts) > 3 else "")
            if s.url_lo is not None:
                where += f" [ids {s.url_lo}-{s.url_hi}]"
            shard_rows.append(
                (
                    str(s.shard_no),
                    s.state,
                    str(s.attempt),
                    f"{s.checked}/{s.url_count}",
                    ago,
                    s.worker or "-",
                    where,
                )
            )
    lines = _table(runs_rows)
    if len(shard_rows) > 1:
        lines += ["", *_table(shard_rows)]
    return "\n".join(lines)
