"""Run rows: a run's life from ``create_run`` to ``finish_run``, and what reports ask of runs.

A run killed mid-way stays 'running' until ``interrupt_stale_runs`` sees its process is gone
(or its heartbeat old) and marks it interrupted with the counts of the results it did write;
``reopen_run`` resumes it. The per-batch writes live in ``monitor.store.results``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select, update

from monitor.store.scope import encode_roots, run_roots
from monitor.store.tables import RESULTS, RUNS


def holder_id() -> str:
    """Who runs this process: host and pid, stored on runs and leases."""
    return f"{socket.gethostname()}:{os.getpid()}"


def create_run(
    engine: Engine, *, trigger: str, fingerprint: str, now: datetime, roots: Sequence[str] | None = None
) -> int:
    """Open a run row; ``roots`` (normalised) scope its plan and reports (None: the whole inventory)."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(RUNS)
                .values(
                    started_at=now,
                    heartbeat_at=now,
                    state="running",
                    trigger=trigger,
                    config_fingerprint=fingerprint,
                    holder=holder_id(),
                    roots=encode_roots(roots) if roots is not None else None,
                )
                .returning(RUNS.c.id)
            ).scalar_one()
        )


def recorded_roots(engine: Engine, run_id: int) -> list[str] | None:
    """The roots run ``run_id`` recorded (None: none, or the whole inventory)."""
    with engine.connect() as conn:
        roots = run_roots(conn, run_id)
    return list(roots) if roots is not None else None


def run_state(engine: Engine, run_id: int) -> str:
    """The run's state: running, finished, interrupted or failed."""
    with engine.connect() as conn:
        return str(conn.execute(select(RUNS.c.state).where(RUNS.c.id == run_id)).scalar_one())


def set_total(engine: Engine, run_id: int, total: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(total_targets=total))


def run_total(engine: Engine, run_id: int) -> int:
    """The run's recorded number of targets (``set_total``)."""
    with engine.connect() as conn:
        return int(conn.execute(select(RUNS.c.total_targets).where(RUNS.c.id == run_id)).scalar_one())


def verdict_counts(conn: Connection, run_id: int) -> dict[str, int]:
    """Verdict → number of result rows of a run (what a closed run records in ``run.counts``)."""
    query = (
        select(RESULTS.c.verdict, func.count()).where(RESULTS.c.run_id == run_id).group_by(RESULTS.c.verdict)
    )
    return {verdict: int(n) for verdict, n in conn.execute(query)}


def finish_run(
    engine: Engine, run_id: int, *, state: str, now: datetime, error: str | None = None
) -> dict[str, int]:
    """Close a run: state, end time, and verdict counts computed from its result rows."""
    with engine.begin() as conn:
        counts = verdict_counts(conn, run_id)
        checked = sum(counts.values())
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(
                state=state,
                finished_at=now,
                counts=json.dumps(counts, sort_keys=True),
                checked=checked,
                error=error,
            )
        )
    return counts


def interrupt_stale_runs(engine: Engine, *, now: datetime, stale_after: timedelta) -> list[int]:
    """Mark runs left 'running' by a dead process as interrupted; returns their ids.

    A run is stale when its heartbeat is older than ``stale_after``, or when it was
    started by a process on this host that no longer exists.
    """
    me = socket.gethostname()
    stale: list[int] = []
    with engine.begin() as conn:
        for run_id, holder, beat in conn.execute(
            select(RUNS.c.id, RUNS.c.holder, RUNS.c.heartbeat_at).where(RUNS.c.state == "running")
        ):
            host, _, pid = (holder or "").rpartition(":")
            dead_here = host == me and pid.isdigit() and not pid_alive(int(pid))
            if dead_here or beat is None or beat < now - stale_after:
                stale.append(run_id)
        for run_id in stale:
            counts = verdict_counts(conn, run_id)
            conn.execute(
                update(RUNS)
                .where(RUNS.c.id == run_id)
                .values(
                    state="interrupted",
                    finished_at=now,
                    counts=json.dumps(counts, sort_keys=True),
                    checked=sum(counts.values()),
                    error="the process running this check stopped before it finished",
                )
            )
    return stale


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def latest_interrupted(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            select(RUNS.c.id).where(RUNS.c.state == "interrupted").order_by(RUNS.c.id.desc()).limit(1)
        ).scalar_one_or_none()


def reopen_run(engine: Engine, run_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(RUNS)
            .where(RUNS.c.id == run_id)
            .values(state="running", finished_at=None, heartbeat_at=now, holder=holder_id(), error=None)
        )


def unwritten_reports(engine: Engine) -> list[int]:
    """Finished scheduled runs whose report files were never written (writer died or failed), oldest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(RUNS.c.id)
                .where(
                    RUNS.c.trigger == "schedule",
                    RUNS.c.state == "finished",
                    RUNS.c.reports_written_at.is_(None),
                )
                .order_by(RUNS.c.id)
            ).scalars()
        )


def newest_scheduled_run(engine: Engine) -> int | None:
    """The newest finished scheduled run: the one ``latest.*`` report files show."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.max(RUNS.c.id)).where(RUNS.c.trigger == "schedule", RUNS.c.state == "finished")
        ).scalar()


def mark_reports_written(engine: Engine, run_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(reports_written_at=now))


def heartbeat(engine: Engine, run_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(heartbeat_at=now))


def run_counts(engine: Engine, run_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """(verdict → count, severity → count) of a run's results."""
    with engine.connect() as conn:
        by_verdict = verdict_counts(conn, run_id)
        by_severity: dict[str, int] = dict(
            conn.execute(
                select(RESULTS.c.severity, func.count())
                .where(RESULTS.c.run_id == run_id)
                .group_by(RESULTS.c.severity)
            ).all()
        )
    return by_verdict, by_severity
