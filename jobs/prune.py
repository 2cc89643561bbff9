"""History pruning: result and size-check rows older than ``retention_days`` go, their
per-day per-verdict counts stay in ``rollup``.

Each batch is one short transaction that deletes up to ``batch_size`` rows (DELETE …
RETURNING, so the write lock comes first and SQLite never has to upgrade a read) and
adds what it deleted to the rollup counts. A crash between batches loses nothing and
counts nothing twice. URL state, runs and state changes are kept.

Result rows count under their verdict on the day they were checked; size checks count
as ``size:<check>`` (``size:match``, ``size:size_mismatch``…) on the day their run started.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine, ScalarSelect, delete, select

from monitor.config import PruneJob, Settings
from monitor.store.db import dialect_insert
from monitor.store.tables import RESULTS, ROLLUPS, RUNS, SIZE_CHECKS

SIZE_PREFIX = "size:"

log = structlog.get_logger("monitor.jobs")


@dataclass(slots=True)
class PruneOutcome:
    """What a prune deleted, and the cut-off it used."""

    cutoff: datetime
    results: int = 0
    size_checks: int = 0
    batches: int = 0
    stopped: bool = False

    def as_log(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "results_deleted": self.results,
            "size_checks_deleted": self.size_checks,
            "batches": self.batches,
        }


async def prune_history(settings: Settings, engine: Engine, stop: asyncio.Event) -> PruneOutcome:
    """The scheduled job: prune in a worker thread, stopping between batches when asked."""
    return await asyncio.to_thread(prune, engine, settings.jobs.prune_history, should_stop=stop.is_set)


def prune(
    engine: Engine,
    policy: PruneJob,
    *,
    now: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PruneOutcome:
    """Delete rows older than ``policy.retention_days`` in batches, rolling their counts up first."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=policy.retention_days)
    outcome = PruneOutcome(cutoff=cutoff)
    old_runs = select(RUNS.c.id).where(RUNS.c.started_at < cutoff).scalar_subquery()
    steps: list[tuple[str, Callable[[Connection], int]]] = [
        ("results", lambda conn: _results_batch(conn, cutoff, policy.batch_size)),
        ("size_checks", lambda conn: _size_checks_batch(conn, old_runs, policy.batch_size)),
    ]
    for attr, step in steps:
        while not should_stop():
            with engine.begin() as conn:
                deleted = step(conn)
            if deleted:
                outcome.batches += 1
                setattr(outcome, attr, getattr(outcome, attr) + deleted)
            if deleted < policy.batch_size:
                break
    outcome.stopped = should_stop()
    log.info("prune.done", **outcome.as_log(), stopped=outcome.stopped)
    return outcome


def _results_batch(conn: Connection, cutoff: datetime, size: int) -> int:
    ids = select(RESULTS.c.id).where(RESULTS.c.checked_at < cutoff).order_by(RESULTS.c.id).limit(size)
    gone = conn.execute(
        delete(RESULTS).where(RESULTS.c.id.in_(ids)).returning(RESULTS.c.checked_at, RESULTS.c.verdict)
    ).all()
    _add_to_rollup(conn, ((_day(at), verdict) for at, verdict in gone))
    return len(gone)


def _size_checks_batch(conn: Connection, old_runs: ScalarSelect[int], size: int) -> int:
    ids = (
        select(SIZE_CHECKS.c.id)
        .where(SIZE_CHECKS.c.run_id.in_(old_runs))
        .order_by(SIZE_CHECKS.c.id)
        .limit(size)
    )
    gone = conn.execute(
        delete(SIZE_CHECKS)
        .where(SIZE_CHECKS.c.id.in_(ids))
        .returning(SIZE_CHECKS.c.run_id, SIZE_CHECKS.c.verdict)
    ).all()
    if gone:
        run_ids = sorted({run_id for run_id, _ in gone})
        started = dict(conn.execute(select(RUNS.c.id, RUNS.c.started_at).where(RUNS.c.id.in_(run_ids))).all())
        _add_to_rollup(conn, ((_day(started[run_id]), SIZE_PREFIX + v) for run_id, v in gone))
    return len(gone)


def _add_to_rollup(conn: Connection, keys: Iterable[tuple[date, str]]) -> None:
    """Upsert-add the counts: an existing (day, verdict) row grows, a new one is inserted."""
    counts = Counter(keys)
    if not counts:
        return
    ins = dialect_insert(conn, ROLLUPS)
    stmt = ins.on_conflict_do_update(
        index_elements=[ROLLUPS.c.day, ROLLUPS.c.verdict],
        set_={"count": ROLLUPS.c.count + ins.excluded.count},
    )
    conn.execute(stmt, [{"day": d, "verdict": v, "count": n} for (d, v), n in sorted(counts.items())])


def _day(at: datetime) -> date:
    """The UTC calendar day of a stored timestamp (aware or naive UTC)."""
    return (at.astimezone(UTC) if at.tzinfo is not None else at).date()
