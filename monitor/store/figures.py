"""The figures behind the metrics and the health check, read from the runs and results tables.

They come from the database, not from the process that ran the check, so a one-shot
``monitor check``, a local job, a multi-process run and a distributed run all give the
same numbers, and a restarted daemon knows when the last nightly run succeeded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from monitor.store.models import CorpusErrorRow
from monitor.store.tables import RESULTS, RUNS, URLS
from monitor.types import Severity

# run.trigger -> the job name the metrics use; a resumed run counts for `check`
JOB_OF_TRIGGER = {
    "schedule": "nightly_check",
    "recheck": "recheck_failing",
    "cli": "check",
    "resume": "check",
}
TRIGGERS_OF_JOB: dict[str, tuple[str, ...]] = {
    "nightly_check": ("schedule",),
    "recheck_failing": ("recheck",),
    "check": ("cli", "resume"),
}


@dataclass(frozen=True, slots=True)
class JobTimes:
    """When a run-backed job last started and last finished successfully (UTC epoch seconds)."""

    last_run: float | None
    last_success: float | None
    last_duration_s: float | None


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What the newest finished run found and cost."""

    run_id: int
    job: str
    by_verdict: dict[str, int]
    broken_by_host: dict[str, int]  # error-severity results, top N hosts only
    broken_other_hosts: int  # error-severity results on the hosts beyond the top N
    requests: int  # HTTP attempts, retries included
    retries: int
    bytes_read: int
    corpus_errors: int


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.timestamp()


def job_times(engine: Engine) -> dict[str, JobTimes]:
    """Per run-backed job: newest run start, newest finished run's end and its duration."""
    out: dict[str, JobTimes] = {}
    with engine.connect() as conn:
        for job, triggers in TRIGGERS_OF_JOB.items():
            last_run = conn.execute(
                select(func.max(RUNS.c.started_at)).where(RUNS.c.trigger.in_(triggers))
            ).scalar_one()
            ok = conn.execute(
                select(RUNS.c.started_at, RUNS.c.finished_at)
                .where(RUNS.c.trigger.in_(triggers), RUNS.c.state == "finished")
                .order_by(RUNS.c.finished_at.desc())
                .limit(1)
            ).first()
            if last_run is None and ok is None:
                continue
            started, finished = (_epoch(ok[0]), _epoch(ok[1])) if ok else (None, None)
            duration = finished - started if started is not None and finished is not None else None
            out[job] = JobTimes(_epoch(last_run), finished, duration)
    return out


def last_success(engine: Engine, job: str) -> datetime | None:
    """End of the newest finished run of ``job`` (aware UTC), None when there is none."""
    with engine.connect() as conn:
        value = conn.execute(
            select(func.max(RUNS.c.finished_at)).where(
                RUNS.c.trigger.in_(TRIGGERS_OF_JOB[job]), RUNS.c.state == "finished"
            )
        ).scalar_one()
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def latest_figures(engine: Engine, top_hosts: int) -> RunFigures | None:
    """Figures of the newest finished run, or None before the first one."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RUNS.c.id, RUNS.c.trigger, RUNS.c.counts)
            .where(RUNS.c.state == "finished")
            .order_by(RUNS.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        run_id, trigger, counts = int(row[0]), str(row[1]), json.loads(row[2] or "{}")
        hosts = conn.execute(
            select(URLS.c.host, func.count())
            .join(RESULTS, RESULTS.c.url_id == URLS.c.id)
            .where(RESULTS.c.run_id == run_id, RESULTS.c.severity == Severity.ERROR.value)
            .group_by(URLS.c.host)
            .order_by(func.count().desc(), URLS.c.host)
        ).all()
        attempts, bytes_read, results = conn.execute(
            select(
                func.coalesce(func.sum(RESULTS.c.attempts), 0),
                func.coalesce(func.sum(RESULTS.c.bytes_read), 0),
                func.count(),
            ).where(RESULTS.c.run_id == run_id, RESULTS.c.method.is_not(None))
        ).one()
        corpus_errors = conn.execute(select(func.count()).select_from(CorpusErrorRow)).scalar_one()
    top = {str(host): int(n) for host, n in hosts[:top_hosts]}
    return RunFigures(
        run_id=run_id,
        job=JOB_OF_TRIGGER.get(trigger, trigger),
        by_verdict={str(k): int(v) for k, v in counts.items()},
        broken_by_host=top,
        broken_other_hosts=sum(int(n) for _, n in hosts[top_hosts:]),
        requests=int(attempts),
        retries=int(attempts) - int(results),
        bytes_read=int(bytes_read),
        corpus_errors=int(corpus_errors),
    )


def nightly_freshness(engine: Engine, max_age_hours: float, now: datetime) -> dict[str, object]:
    """Whether the newest successful nightly run is older than ``max_age_hours`` (never run: stale;
    ``max_age_hours`` 0: never stale)."""
    at = last_success(engine, "nightly_check")
    age = (now - at).total_seconds() / 3600 if at is not None else None
    return {
        "last_nightly_success": at.isoformat() if at is not None else None,
        "age_hours": round(age, 3) if age is not None else None,
        "max_age_hours": max_age_hours,
        "stale": max_age_hours > 0 and (age is None or age > max_age_hours),
    }
