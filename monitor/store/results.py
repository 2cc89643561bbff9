"""Run persistence: run rows, the check plan, result batches and per-URL state.

Everything a run learns reaches the database through ``save_batch`` — one
transaction per batch — so a crash loses at most the batch in hand. Result rows are
unique per (run, URL) and inserted with ON CONFLICT DO NOTHING, so a resumed or
retried batch never duplicates them.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)

from monitor.store.db import insert_ignore
from monitor.store.tables import ARTICLES, OCCURRENCES, RESULTS, RUNS, SIZE_CHECKS, STATE_CHANGES, URLS
from monitor.types import Role, Size, Target, TargetKind, Verdict

FAILING = [v.value for v in Verdict if v.is_failure]


def holder_id() -> str:
    """Who runs this process: host and pid, stored on runs and leases."""
    return f"{socket.gethostname()}:{os.getpid()}"


def create_run(engine: Engine, *, trigger: str, fingerprint: str, now: datetime) -> int:
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
                )
                .returning(RUNS.c.id)
            ).scalar_one()
        )


def run_state(engine: Engine, run_id: int) -> str:
    """The run's state: running, finished, interrupted or failed."""
    with engine.connect() as conn:
        return str(conn.execute(select(RUNS.c.state).where(RUNS.c.id == run_id)).scalar_one())


def set_total(engine: Engine, run_id: int, total: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(total_targets=total))


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

    ARTICLES run is stale when its heartbeat is older than ``stale_after``, or when it was
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


@dataclass(frozen=True, slots=True)
class Planned:
    """A target of this run with its database id."""

    url_id: int
    target: Target


def live_urls() -> object:
    return exists().where(OCCURRENCES.c.url_id == URLS.c.id)


GOOD = [v.value for v in Verdict if v.is_good]


def freshness_cutoffs(stale_after_days: Mapping[Role, int], now: datetime) -> dict[str, datetime]:
    """Role → oldest check time still counting as fresh, from ``jobs.stale_after_days``."""
    return {Role(role).value: now - timedelta(days=days) for role, days in stale_after_days.items()}


def _needs_check(stale_before: Mapping[str, datetime]) -> ColumnElement[bool]:
    """Adaptive freshness: skip a healthy URL when every live place it appears in has a role
    with a cut-off and it was checked after the strictest of them; anything failing, never
    checked, or also used in a role without a cut-off is always checked.
    """
    fresh_here = or_(
        *(and_(OCCURRENCES.c.role == role, URLS.c.last_checked >= cut) for role, cut in stale_before.items())
    )
    return or_(
        URLS.c.last_verdict.is_(None),
        URLS.c.last_verdict.not_in(GOOD),
        URLS.c.last_checked.is_(None),
        exists().where(OCCURRENCES.c.url_id == URLS.c.id, not_(fresh_here)),
    )


def plan_page(
    conn: Connection,
    *,
    run_id: int,
    after_id: int,
    limit: int,
    only_failing: bool = False,
    stale_before: Mapping[str, datetime] | None = None,
    hosts: Sequence[str] | None = None,
    exclude_hosts: Sequence[str] | None = None,
    id_range: tuple[int, int] | None = None,
) -> list[Planned]:
    """The next page of targets (by id) that are in the live inventory and lack a result in this run.

    ``stale_before`` (role → cut-off, see ``freshness_cutoffs``) leaves out healthy URLs
    checked recently enough; None or empty checks everything. ``hosts`` and ``id_range``
    (inclusive) restrict the page to one shard of a distributed run; ``exclude_hosts`` leaves
    out the hosts that a run reads through cursors of their own.
    """
    query = (
        select(
            URLS.c.id,
            URLS.c.url,
            URLS.c.host,
            URLS.c.kind,
            URLS.c.etag,
            URLS.c.last_modified,
            URLS.c.last_checked,
            URLS.c.last_verdict,
        )
        .where(URLS.c.id > after_id, live_urls())
        .where(~exists().where(and_(RESULTS.c.run_id == run_id, RESULTS.c.url_id == URLS.c.id)))
        .order_by(URLS.c.id)
        .limit(limit)
    )
    if only_failing:
        query = query.where(URLS.c.last_verdict.in_(FAILING))
    if stale_before:
        query = query.where(_needs_check(stale_before))
    if hosts is not None:
        query = query.where(URLS.c.host.in_(list(hosts)))
    if exclude_hosts:
        query = query.where(URLS.c.host.not_in(list(exclude_hosts)))
    if id_range is not None:
        query = query.where(URLS.c.id.between(*id_range))
    out = []
    for uid, url, host, kind, etag, last_modified, _last_checked, _verdict in conn.execute(query):
        out.append(
            Planned(
                uid,
                Target(url=url, host=host, kind=TargetKind(kind), etag=etag, last_modified=last_modified),
            )
        )
    return out


def count_plan(
    engine: Engine,
    *,
    run_id: int,
    only_failing: bool = False,
    stale_before: Mapping[str, datetime] | None = None,
) -> int:
    """How many targets ``plan_page`` would yield in total (same filters)."""
    query = _planned(select(func.count()).select_from(URLS), run_id, only_failing, stale_before)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def count_plan_by_host(
    engine: Engine,
    *,
    run_id: int,
    only_failing: bool = False,
    stale_before: Mapping[str, datetime] | None = None,
    hosts: Sequence[str] | None = None,
    id_range: tuple[int, int] | None = None,
) -> dict[str, int]:
    """``count_plan`` per host (within ``hosts`` and ``id_range``, as ``plan_page``): how a run's
    targets split between processes, and which hosts set its pace."""
    query = _planned(select(URLS.c.host, func.count()).select_from(URLS), run_id, only_failing, stale_before)
    if hosts is not None:
        query = query.where(URLS.c.host.in_(list(hosts)))
    if id_range is not None:
        query = query.where(URLS.c.id.between(*id_range))
    with engine.connect() as conn:
        return {host: int(n) for host, n in conn.execute(query.group_by(URLS.c.host))}


def _planned(query: Any, run_id: int, only_failing: bool, stale_before: Mapping[str, datetime] | None) -> Any:
    query = query.where(live_urls()).where(
        ~exists().where(and_(RESULTS.c.run_id == run_id, RESULTS.c.url_id == URLS.c.id))
    )
    if only_failing:
        query = query.where(URLS.c.last_verdict.in_(FAILING))
    if stale_before:
        query = query.where(_needs_check(stale_before))
    return query


@dataclass(frozen=True, slots=True)
class OccurrenceInfo:
    id: int
    article: str
    location: str
    role: Role
    declared: Size | None


def occurrences_for(conn: Connection, url_ids: Sequence[int]) -> dict[int, list[OccurrenceInfo]]:
    """Live occurrences of the given URLs (roles decide severity; images get size checks)."""
    out: dict[int, list[OccurrenceInfo]] = {}
    if not url_ids:
        return out
    query = (
        select(
            OCCURRENCES.c.url_id,
            OCCURRENCES.c.id,
            ARTICLES.c.path,
            OCCURRENCES.c.location,
            OCCURRENCES.c.role,
            OCCURRENCES.c.declared_width,
            OCCURRENCES.c.declared_height,
        )
        .select_from(OCCURRENCES.join(ARTICLES, OCCURRENCES.c.article_id == ARTICLES.c.id))
        .where(OCCURRENCES.c.url_id.in_(list(url_ids)))
        .order_by(OCCURRENCES.c.url_id, OCCURRENCES.c.id)
    )
    for uid, oid, path, location, role, w, h in conn.execute(query):
        declared = Size(w, h) if w is not None and h is not None else None
        out.setdefault(uid, []).append(OccurrenceInfo(oid, path, location, Role(role), declared))
    return out


@dataclass(frozen=True, slots=True)
class UrlState:
    url_id: int
    consecutive_failures: int
    consecutive_successes: int
    failing_since: datetime | None
    last_ok: datetime | None
    alert_state: str
    alert_failures: int
    alert_successes: int
    recent: str
    last_verdict: str | None


def states_for(conn: Connection, url_ids: Sequence[int]) -> dict[int, UrlState]:
    rows = conn.execute(
        select(
            URLS.c.id,
            URLS.c.consecutive_failures,
            URLS.c.consecutive_successes,
            URLS.c.failing_since,
            URLS.c.last_ok,
            URLS.c.alert_state,
            URLS.c.alert_failures,
            URLS.c.alert_successes,
            URLS.c.recent,
            URLS.c.last_verdict,
        ).where(URLS.c.id.in_(list(url_ids)))
    )
    return {r[0]: UrlState(*r) for r in rows}


def previous_results(
    conn: Connection, url_ids: Sequence[int], before_run: int
) -> dict[int, dict[str, object]]:
    """The latest earlier result row of each URL (a 304 keeps these facts)."""
    if not url_ids:
        return {}
    latest = (
        select(RESULTS.c.url_id, func.max(RESULTS.c.run_id).label("run_id"))
        .where(RESULTS.c.url_id.in_(list(url_ids)), RESULTS.c.run_id < before_run)
        .group_by(RESULTS.c.url_id)
        .subquery()
    )
    query = select(RESULTS).join(
        latest, and_(RESULTS.c.url_id == latest.c.url_id, RESULTS.c.run_id == latest.c.run_id)
    )
    return {row.url_id: dict(row._mapping) for row in conn.execute(query)}


@dataclass(slots=True)
class BatchWrite:
    """Rows computed for one batch; written together in one transaction."""

    results: list[dict[str, object]]
    size_checks: list[dict[str, object]]
    url_updates: list[dict[str, object]]
    state_changes: list[dict[str, object]]


def write_batch(conn: Connection, run_id: int, batch: BatchWrite, now: datetime) -> None:
    if batch.results:
        _executemany(conn, "result", lambda: insert_ignore(conn, RESULTS), batch.results)
    if batch.size_checks:
        _executemany(conn, "size_check", lambda: insert_ignore(conn, SIZE_CHECKS), batch.size_checks)
    if batch.url_updates:
        keys = [k for k in batch.url_updates[0] if k != "b_id"]
        _executemany(
            conn,
            "url_state",
            lambda: (
                update(URLS).where(URLS.c.id == bindparam("b_id")).values({k: bindparam(k) for k in keys})
            ),
            batch.url_updates,
        )
    if batch.state_changes:
        conn.execute(insert(STATE_CHANGES), batch.state_changes)
    conn.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(heartbeat_at=now, checked=RUNS.c.checked + len(batch.results))
    )


_Prepared = tuple[str, tuple[str, ...], dict[str, Callable[[Any], Any]], bool]
_PREPARED: dict[tuple[str, str, tuple[str, ...]], _Prepared] = {}


def _executemany(conn: Connection, name: str, build: Callable[[], Any], rows: list[dict[str, Any]]) -> None:
    """One executemany of ``rows`` with the statement compiled once per dialect and key set.

    Why not ``conn.execute(stmt, rows)``: SQLAlchemy rebuilds and converts every row's
    parameters in Python, which cost more CPU than SQLite's own work on the result rows and
    ran on the writer thread, competing with the event loop for the GIL. Here each row
    becomes a plain tuple (or dict, for named paramstyles), with the column types' own bind
    processors (e.g. SQLite's datetime formatting) applied to the columns that have one.
    """
    keys = tuple(rows[0])
    cache_key = (conn.dialect.name, name, keys)
    prepared = _PREPARED.get(cache_key)
    if prepared is None:
        compiled = build().compile(dialect=conn.dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or compiled.binds)
        processors = {
            bind: proc
            for bind in names
            if (proc := compiled.binds[bind].type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
            is not None
        }
        prepared = _PREPARED[cache_key] = (str(compiled), names, processors, bool(compiled.positiontup))
    sql, names, processors, positional = prepared
    if positional:
        params: list[Any] = [
            tuple(processors[n](row[n]) if n in processors else row[n] for n in names) for row in rows
        ]
    else:
        params = [{n: processors[n](row[n]) if n in processors else row[n] for n in names} for row in rows]
    conn.exec_driver_sql(sql, params)


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
        by_severity = dict(
            conn.execute(
                select(RESULTS.c.severity, func.count())
                .where(RESULTS.c.run_id == run_id)
                .group_by(RESULTS.c.severity)
            ).all()
        )
    return by_verdict, by_severity
