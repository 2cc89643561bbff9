"""The report aggregate: ``build_report`` reads one run and returns it as a ReportData.

Counting happens in SQL (GROUP BY over the ``(run_id, verdict)`` and ``(run_id, url_id)``
indexes); Python only touches rows that end up in the report. Every list is capped at
``limit`` (occurrences per URL at ``occurrence_limit``) and keeps its full total, so a
report over millions of result rows stays fast and says how much it left out. The section
queries are in ``queries_urls`` and ``queries_counts``; the values in ``model``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, select

from monitor.store.scope import run_roots
from monitor.store.tables import RESULTS, RUNS
from reports import queries_counts, queries_urls
from reports.model import ReportData, ReportError, RunInfo
from reports.queries import Scope
from reports.sections import choose

DEFAULT_LIMIT = 1000
DEFAULT_OCCURRENCE_LIMIT = 50
DEFAULT_TOP_HOSTS = 10
# each registered section's query; ReportData has a field of the same name
BUILDERS: dict[str, Callable[[Scope], Any]] = {
    "summary": queries_counts.summary,
    "broken": queries_urls.broken,
    "images": queries_urls.images,
    "moved": queries_urls.moved,
    "changes": queries_urls.changes,
    "blocked": queries_urls.blocked,
    "acknowledged": queries_urls.acknowledged,
    "findings": queries_counts.findings,
    "corpus_errors": queries_counts.corpus_errors,
    "trend": queries_counts.trend,
}


def build_report(
    engine: Engine,
    run_id: int | None = None,
    *,
    sections: Sequence[str] | None = None,
    trend_runs: int = 30,
    limit: int | None = DEFAULT_LIMIT,
    occurrence_limit: int = DEFAULT_OCCURRENCE_LIMIT,
    top_hosts: int = DEFAULT_TOP_HOSTS,
    now: datetime | None = None,
    since_run: int | None = None,
    since: timedelta | None = None,
) -> ReportData:
    """Aggregate run ``run_id`` (default: the latest run) into a ReportData.

    ``limit`` caps every list (None: no cap), ``occurrence_limit`` the places listed per URL;
    ``now`` fixes ``generated_at`` (tests, reproducible files). ``changes`` compares with the
    previous run that has results, or with run ``since_run``, or with the last run with results
    that started ``since`` before ``now`` ("what changed since last night").
    """
    wanted = choose(sections)
    if (limit is not None and limit < 1) or min(occurrence_limit, trend_runs, top_hosts) < 1:
        raise ReportError("limit, occurrence_limit, trend_runs and top_hosts must be at least 1")
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every query (SQLite's read already is)
            conn.execution_options(isolation_level="REPEATABLE READ")
        run = _run(conn, run_id)
        if since_run is not None or since is not None:
            base = _baseline(conn, run, since_run, since, now or datetime.now(UTC))
            run = replace(run, previous_run_id=base)
        run = replace(run, roots=run_roots(conn, run.id))
        scope = Scope(
            conn,
            run.id,
            run.previous_run_id,
            limit,
            occurrence_limit,
            top_hosts,
            trend_runs,
            run.roots,
        )
        return ReportData(
            generated_at=now or datetime.now(UTC),
            run=run,
            sections=wanted,
            limit=limit,
            **{name: BUILDERS[name](scope) for name in wanted},
        )


def _baseline(
    conn: Connection, run: RunInfo, since_run: int | None, since: timedelta | None, now: datetime
) -> int:
    """The run ``changes`` compares with when asked for one; a ReportError when there is none."""
    has_results = exists().where(RESULTS.c.run_id == RUNS.c.id)
    if since_run is not None:
        if since_run >= run.id:
            raise ReportError(f"--since-run {since_run} is not before run {run.id}")
        if conn.execute(select(RUNS.c.id).where(RUNS.c.id == since_run, has_results)).scalar() is None:
            raise ReportError(f"run {since_run} does not exist or has no results")
        return since_run
    assert since is not None
    cutoff = now - since
    found = conn.execute(
        select(RUNS.c.id)
        .where(RUNS.c.id < run.id, RUNS.c.started_at <= cutoff, has_results)
        .order_by(RUNS.c.id.desc())
        .limit(1)
    ).scalar()
    if found is None:
        raise ReportError(f"no run with results started before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
    return int(found)


def _run(conn: Connection, run_id: int | None) -> RunInfo:
    query = select(RUNS)
    query = (
        query.where(RUNS.c.id == run_id) if run_id is not None else query.order_by(RUNS.c.id.desc()).limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        raise ReportError(
            "no check run in the database yet" if run_id is None else f"no run with id {run_id}"
        )
    has_results = exists().where(RESULTS.c.run_id == RUNS.c.id)
    previous = conn.execute(
        select(RUNS.c.id).where(RUNS.c.id < row.id, has_results).order_by(RUNS.c.id.desc()).limit(1)
    ).scalar()
    duration = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
    return RunInfo(
        id=row.id,
        state=row.state,
        trigger=row.trigger,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_seconds=duration,
        total_targets=row.total_targets,
        checked=row.checked,
        error=row.error,
        previous_run_id=previous,
    )
