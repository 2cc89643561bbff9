"""What every section query shares: the run and caps in scope, the verdict groups, count helpers.

The verdict groups decide section membership (see ``queries_urls``); they live here because
the summary counts problems by the same severities the URL lists select on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, select

from monitor.store.scope import Roots
from monitor.store.tables import STATE_CHANGES
from monitor.types import Severity, Verdict

PROBLEM_SEVERITIES = (Severity.ERROR.value, Severity.WARNING.value)
GOOD_VERDICTS = tuple(v.value for v in Verdict if v.is_good)
FAILING_VERDICTS = tuple(v.value for v in Verdict if v.is_failure)
MOVED_VERDICTS = (Verdict.MOVED_PERMANENTLY.value,)
BLOCKED_VERDICTS = (Verdict.BLOCKED.value, Verdict.RATE_LIMITED.value, Verdict.TIMEOUT.value)
IMAGE_VERDICTS = (Verdict.NOT_IMAGE.value, Verdict.IMAGE_UNREADABLE.value)
# failures that count as "broken" in ``changes``; blocked/rate_limited/timeout say nothing about the link
CHANGE_FAILING_VERDICTS = tuple(v for v in FAILING_VERDICTS if v not in BLOCKED_VERDICTS)
BROKEN_VERDICTS = tuple(
    v.value for v in Verdict if v.value not in (*MOVED_VERDICTS, *BLOCKED_VERDICTS, *IMAGE_VERDICTS)
)


@dataclass(frozen=True, slots=True)
class Scope:
    """The run a report is about, its predecessor with results, and the caps every query obeys.

    ``roots`` are the run's corpus roots (``store.scope``): occurrences, findings, corpus errors
    and inventory counts outside them are not the run's and stay out of its report.
    """

    conn: Connection
    run_id: int
    previous_id: int | None
    limit: int | None
    occurrence_limit: int
    top_hosts: int
    trend_runs: int
    roots: Roots = None


def count(conn: Connection, query: Any) -> int:
    """The single integer ``query`` selects."""
    return int(conn.execute(query).scalar_one())


def errors_sum(sev: Any) -> Any:
    """SQL: how many rows of the group have severity error."""
    return func.sum(case((sev == Severity.ERROR.value, 1), else_=0))


def warnings_sum(sev: Any) -> Any:
    """SQL: how many rows of the group have severity warning."""
    return func.sum(case((sev == Severity.WARNING.value, 1), else_=0))


def failing(table: Any) -> ColumnElement[bool]:
    """The verdicts the changes section counts as failing, at a problem severity, in ``table``."""
    return and_(table.c.verdict.in_(CHANGE_FAILING_VERDICTS), table.c.severity.in_(PROBLEM_SEVERITIES))


def flapping_ids(run_id: int) -> Any:
    """URLs whose latest alert-state change up to ``run_id`` went to flapping."""
    latest = (
        select(func.max(STATE_CHANGES.c.id).label("id"))
        .where(STATE_CHANGES.c.run_id <= run_id)
        .group_by(STATE_CHANGES.c.url_id)
        .subquery()
    )
    return (
        select(STATE_CHANGES.c.url_id)
        .join(latest, latest.c.id == STATE_CHANGES.c.id)
        .where(STATE_CHANGES.c.to_state == "flapping")
    )
