"""The shard ledger: run_shard / run_fanout / run_event, the source of truth of a distributed run.

Procrastinate jobs only say "go and look at shard N"; whether a shard still needs work,
who owns it and whether a batch may commit are decided here, in PostgreSQL, with the
database clock (``now()``) so hosts with skewed clocks agree on what is stale. A duplicate
or late job is therefore harmless: it finds the shard done or owned and does nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, insert, select, text, update

from monitor.clock import utcnow
from monitor.run.shards import ShardSpec
from monitor.store.plan import FAILING, run_urls
from monitor.store.tables import RESULTS, RUN_EVENTS, RUN_FANOUT, RUN_SHARDS, RUNS, URLS


class ShardLost(Exception):
    """The shard was handed to a newer attempt (this worker was presumed dead): stop, commit nothing."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A shard this worker now owns, with the fencing token every write must still match."""

    shard_id: int
    run_id: int
    attempt: int
    hosts: tuple[str, ...]
    id_range: tuple[int, int] | None
    url_count: int
    only_failing: bool
    host_share: int | None = None  # a split host's slice: its share of the host's limit


def _pending_urls(db: Connection, run_id: int, only_failing: bool) -> Any:
    """Live URLs of the run's roots without a result in this run (the same filter as ``plan_page``)."""
    cond = and_(
        run_urls(db, run_id),
        ~select(RESULTS.c.id).where(RESULTS.c.run_id == run_id, RESULTS.c.url_id == URLS.c.id).exists(),
    )
    if only_failing:
        cond = and_(cond, URLS.c.last_verdict.in_(FAILING))
    return cond


def host_counts(conn: Connection, run_id: int, only_failing: bool) -> dict[str, int]:
    pending = _pending_urls(conn, run_id, only_failing)
    rows = conn.execute(select(URLS.c.host, func.count()).where(pending).group_by(URLS.c.host))
    return {host: int(n) for host, n in rows}


def slice_bounds(
    conn: Connection, run_id: int, host: str, sizes: Sequence[int], only_failing: bool
) -> list[tuple[int, int]]:
    """Inclusive url-id ranges cutting ``host``'s pending URLs, in id order, into slices of ``sizes``."""
    rank = func.row_number().over(order_by=URLS.c.id)
    inner = (
        select(URLS.c.id, rank.label("rank"))
        .where(URLS.c.host == host, _pending_urls(conn, run_id, only_failing))
        .subquery()
    )
    ends = list(itertools.accumulate(sizes))
    part = case(*((inner.c.rank <= end, no) for no, end in enumerate(ends[:-1])), else_=len(ends) - 1)
    rows = select(func.min(inner.c.id), func.max(inner.c.id)).group_by(part).order_by(part)
    return [(int(lo), int(hi)) for lo, hi in conn.execute(rows)]


def create_shards(
    conn: Connection, run_id: int, specs: Sequence[ShardSpec], bounds: dict[str, list[tuple[int, int]]]
) -> list[int]:
    """Insert the run's shards (state queued, attempt 1); returns their ids in shard order."""
    out: list[int] = []
    for no, spec in enumerate(specs):
        lo_hi = bounds[spec.hosts[0]][spec.part] if spec.part is not None else (None, None)
        row = {"state": "queued", "attempt": 1, "requeues": 0, "checked": 0, "heartbeat_at": func.now()}
        shard_id = conn.execute(
            insert(RUN_SHARDS)
            .values(
                run_id=run_id,
                shard_no=no,
                hosts=json.dumps(list(spec.hosts)),
                url_lo=lo_hi[0],
                url_hi=lo_hi[1],
                host_share=spec.share,
                url_count=spec.url_count,
                **row,
            )
            .returning(RUN_SHARDS.c.id)
        ).scalar_one()
        out.append(int(shard_id))
    return out


def create_fanout(
    conn: Connection, run_id: int, queue: str, total: int, only_failing: bool, lease_holder: str
) -> None:
    conn.execute(
        insert(RUN_FANOUT).values(
            run_id=run_id,
            queue=queue,
            shard_total=total,
            shard_done=0,
            shard_failed=0,
            only_failing=only_failing,
            lease_holder=lease_holder,
        )
    )


def claim(engine: Engine, shard_id: int, worker: str, job_id: int | None) -> Claim | None:
    """Own a queued shard of a running run; None when it is done, failed, owned, or its run has ended."""
    with engine.begin() as conn:
        row = conn.execute(
            update(RUN_SHARDS)
            .where(
                RUN_SHARDS.c.id == shard_id,
                RUN_SHARDS.c.state == "queued",
                select(RUNS.c.id).where(RUNS.c.id == RUN_SHARDS.c.run_id, RUNS.c.state == "running").exists(),
            )
            .values(
                state="running",
                worker=worker,
                job_id=job_id,
                heartbeat_at=func.now(),
                started_at=func.coalesce(RUN_SHARDS.c.started_at, func.now()),
            )
            .returning(
                RUN_SHARDS.c.run_id,
                RUN_SHARDS.c.attempt,
                RUN_SHARDS.c.hosts,
                RUN_SHARDS.c.url_lo,
                RUN_SHARDS.c.url_hi,
                RUN_SHARDS.c.url_count,
                RUN_SHARDS.c.host_share,
            )
        ).first()
        if row is None:
            return None
        only_failing = conn.execute(
            select(RUN_FANOUT.c.only_failing).where(RUN_FANOUT.c.run_id == row.run_id)
        ).scalar_one()
    id_range = (row.url_lo, row.url_hi) if row.url_lo is not None else None
    return Claim(
        shard_id,
        row.run_id,
        row.attempt,
        tuple(json.loads(row.hosts)),
        id_range,
        row.url_count,
        bool(only_failing),
        row.host_share,
    )


def fence(conn: Connection, shard_id: int, attempt: int) -> None:
    """Lock the shard row for this transaction and raise ShardLost unless ``attempt`` still owns it.

    The row lock orders this batch against a concurrent hand-back: either the batch commits
    first (and the next attempt, planning after its claim, sees its results), or the
    hand-back does and this batch is refused.
    """
    row = conn.execute(
        select(RUN_SHARDS.c.attempt, RUN_SHARDS.c.state).where(RUN_SHARDS.c.id == shard_id).with_for_update()
    ).first()
    if row is None or row.attempt != attempt or row.state != "running":
        raise ShardLost(f"shard {shard_id} attempt {attempt} was handed over")


def record_batch(
    conn: Connection, shard_id: int, run_id: int, events: Sequence[tuple[str, dict[str, Any]]], written: int
) -> None:
    """Count the batch on the shard and keep its alert events for the fan-in (same transaction)."""
    conn.execute(
        update(RUN_SHARDS)
        .where(RUN_SHARDS.c.id == shard_id)
        .values(checked=RUN_SHARDS.c.checked + written, heartbeat_at=func.now())
    )
    if events:
        conn.execute(
            insert(RUN_EVENTS),
            [
                {
                    "run_id": run_id,
                    "shard_id": shard_id,
                    "name": name,
                    "payload": json.dumps(keys, default=str),
                }
                for name, keys in events
            ],
        )


def beat(engine: Engine, shard_id: int, run_id: int, attempt: int) -> bool:
    """Heartbeat of a working shard (and its run); False when the shard was handed over."""
    with engine.begin() as conn:
        res = conn.execute(
            update(RUN_SHARDS)
            .where(
                RUN_SHARDS.c.id == shard_id, RUN_SHARDS.c.attempt == attempt, RUN_SHARDS.c.state == "running"
            )
            .values(heartbeat_at=func.now())
        )
        if res.rowcount != 1:
            return False
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(heartbeat_at=func.now()))
        return True


def _count_done(conn: Connection, run_id: int, *, failed: bool) -> bool:
    """Bump the run's fan-in counter (row-locked, so of two racing last shards one sees the end)."""
    values = (
        {"shard_failed": RUN_FANOUT.c.shard_failed + 1}
        if failed
        else {"shard_done": RUN_FANOUT.c.shard_done + 1}
    )
    row = conn.execute(
        update(RUN_FANOUT)
        .where(RUN_FANOUT.c.run_id == run_id)
        .values(**values)
        .returning(RUN_FANOUT.c.shard_done, RUN_FANOUT.c.shard_failed, RUN_FANOUT.c.shard_total)
    ).one()
    return bool(row.shard_done + row.shard_failed >= row.shard_total)


def complete(engine: Engine, shard_id: int, run_id: int, attempt: int) -> tuple[bool, bool]:
    """Mark the shard done once; returns (counted, last): ``last`` when this completion ends the run."""
    with engine.begin() as conn:
        res = conn.execute(
            update(RUN_SHARDS)
            .where(
                RUN_SHARDS.c.id == shard_id, RUN_SHARDS.c.attempt == attempt, RUN_SHARDS.c.state == "running"
            )
            .values(state="done", finished_at=func.now(), heartbeat_at=func.now())
        )
        if res.rowcount != 1:
            return False, False
        return True, _count_done(conn, run_id, failed=False)


def hand_back(
    engine: Engine, shard_id: int, reason: str, max_attempts: int, *, attempt: int | None = None
) -> tuple[str | None, bool]:
    """Give a running shard back (fencing out its owner by bumping ``attempt``).

    With ``attempt`` only that owner's shard is handed back (a stopping worker); without it,
    the caller (the reaper) has seen the shard stale. Past ``max_attempts`` the shard fails.
    Returns (new state or None when nothing changed, whether this ended the run).
    """
    with engine.begin() as conn:
        # never queue behind a lock a frozen owner holds: fail fast, the reaper tries again next period
        conn.execute(text("SET LOCAL lock_timeout = '2s'"))
        cond = [RUN_SHARDS.c.id == shard_id, RUN_SHARDS.c.state == "running"]
        if attempt is not None:
            cond.append(RUN_SHARDS.c.attempt == attempt)
        row = conn.execute(
            update(RUN_SHARDS)
            .where(*cond)
            .values(
                attempt=RUN_SHARDS.c.attempt + 1,
                requeues=RUN_SHARDS.c.requeues + 1,
                worker=None,
                heartbeat_at=func.now(),
            )
            .returning(RUN_SHARDS.c.run_id, RUN_SHARDS.c.attempt)
        ).first()
        if row is None:
            return None, False
        if row.attempt > max_attempts:
            conn.execute(
                update(RUN_SHARDS)
                .where(RUN_SHARDS.c.id == shard_id)
                .values(
                    state="failed",
                    finished_at=func.now(),
                    error=f"gave up after {max_attempts} attempts: {reason}",
                )
            )
            return "failed", _count_done(conn, row.run_id, failed=True)
        conn.execute(
            update(RUN_SHARDS).where(RUN_SHARDS.c.id == shard_id).values(state="queued", error=reason)
        )
        return "queued", False


@dataclass(frozen=True, slots=True)
class Stale:
    shard_id: int
    run_id: int
    job_id: int | None
    lock: str | None
    queue: str


def stale_shards(engine: Engine, state: str, older_than: timedelta) -> list[Stale]:
    """Shards of running runs in ``state`` whose last sign of life is older than ``older_than``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                RUN_SHARDS.c.id,
                RUN_SHARDS.c.run_id,
                RUN_SHARDS.c.job_id,
                RUN_SHARDS.c.lock,
                RUN_FANOUT.c.queue,
            )
            .select_from(
                RUN_SHARDS.join(RUN_FANOUT, RUN_FANOUT.c.run_id == RUN_SHARDS.c.run_id).join(
                    RUNS, RUNS.c.id == RUN_SHARDS.c.run_id
                )
            )
            .where(
                RUNS.c.state == "running",
                RUN_SHARDS.c.state == state,
                RUN_SHARDS.c.heartbeat_at < func.now() - older_than,
            )
            .order_by(RUN_SHARDS.c.id)
        )
        return [Stale(*r) for r in rows]


def touch(engine: Engine, shard_id: int) -> None:
    """Restart a queued shard's staleness clock (a fresh job was just deferred for it)."""
    with engine.begin() as conn:
        conn.execute(
            update(RUN_SHARDS)
            .where(RUN_SHARDS.c.id == shard_id, RUN_SHARDS.c.state == "queued")
            .values(heartbeat_at=func.now())
        )


def unfinalized_runs(engine: Engine) -> list[int]:
    """Running runs whose shards have all completed (a finalizer died, or was never reached)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(RUN_FANOUT.c.run_id)
                .join(RUNS, RUNS.c.id == RUN_FANOUT.c.run_id)
                .where(
                    RUNS.c.state == "running",
                    RUN_FANOUT.c.shard_done + RUN_FANOUT.c.shard_failed >= RUN_FANOUT.c.shard_total,
                )
            ).scalars()
        )


def run_events(conn: Connection, run_id: int) -> list[tuple[int, str, dict[str, Any]]]:
    """The run's outbox in commit order: (row id, event name, keys)."""
    rows = conn.execute(
        select(RUN_EVENTS.c.id, RUN_EVENTS.c.name, RUN_EVENTS.c.payload)
        .where(RUN_EVENTS.c.run_id == run_id)
        .order_by(RUN_EVENTS.c.id)
    )
    return [(int(row_id), name, json.loads(payload)) for row_id, name, payload in rows]


def _ended(run_id: Any) -> Any:
    return select(RUNS.c.id).where(RUNS.c.id == run_id, RUNS.c.state != "running").exists()


def undelivered_runs(engine: Engine) -> list[int]:
    """Ended runs whose alert events were never marked emitted (their emitter died, or none ran yet)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(RUN_FANOUT.c.run_id)
                .where(RUN_FANOUT.c.alerts_emitted_at.is_(None), _ended(RUN_FANOUT.c.run_id))
                .order_by(RUN_FANOUT.c.run_id)
            ).scalars()
        )


def claim_alerts(conn: Connection, run_id: int) -> bool:
    """Lock the run's fan-in row for emitting its alerts; False when they are emitted or being emitted.

    The row lock lives as long as the caller's transaction, so an emitter that dies before
    marking the events emitted releases it and the next drain emits them again (at least
    once); SKIP LOCKED makes a concurrent drain pass over a run someone is emitting.
    """
    row = conn.execute(
        select(RUN_FANOUT.c.run_id)
        .where(
            RUN_FANOUT.c.run_id == run_id,
            RUN_FANOUT.c.alerts_emitted_at.is_(None),
            _ended(RUN_FANOUT.c.run_id),
        )
        .with_for_update(skip_locked=True)
    ).first()
    return row is not None


def mark_alerts_emitted(conn: Connection, run_id: int) -> None:
    conn.execute(update(RUN_FANOUT).where(RUN_FANOUT.c.run_id == run_id).values(alerts_emitted_at=func.now()))


def cancel_shards(conn: Connection, run_id: int, reason: str) -> list[int]:
    """Cancel the run's queued and running shards; returns their ids.

    ``cancelled`` is outside every state a worker may act on: the fence refuses the owner's
    next batch, its heartbeat is refused (so it stops at once) and a queued job finds nothing
    to claim. The rows are locked in id order first, the order everyone else locks them in,
    and behind any batch being committed, so no batch commits after this transaction.
    """
    ids = list(
        conn.execute(
            select(RUN_SHARDS.c.id)
            .where(RUN_SHARDS.c.run_id == run_id, RUN_SHARDS.c.state.in_(("queued", "running")))
            .order_by(RUN_SHARDS.c.id)
            .with_for_update()
        ).scalars()
    )
    if ids:
        conn.execute(
            update(RUN_SHARDS)
            .where(RUN_SHARDS.c.id.in_(ids))
            .values(
                state="cancelled",
                attempt=RUN_SHARDS.c.attempt + 1,
                worker=None,
                finished_at=func.now(),
                heartbeat_at=func.now(),
                error=reason,
            )
        )
    return [int(i) for i in ids]


def fanout(conn: Connection, run_id: int) -> Any:
    return conn.execute(select(RUN_FANOUT).where(RUN_FANOUT.c.run_id == run_id)).first()


def shards_of(conn: Connection, run_id: int) -> list[Any]:
    return list(
        conn.execute(select(RUN_SHARDS).where(RUN_SHARDS.c.run_id == run_id).order_by(RUN_SHARDS.c.shard_no))
    )


def db_now(conn: Connection) -> Any:
    """The database's clock, which every worker shares; SQLite has none of its own (and no
    ``now()``), and is only ever used on one machine, so there it is this process's clock."""
    if conn.dialect.name == "sqlite":
        return utcnow()
    return conn.execute(text("SELECT now()")).scalar_one()
