"""The check plan: which live URLs a run still has to check, page by page, and how many.

A URL is planned while it appears in the live inventory, in an article under the run's roots
(``store.scope``), and has no result row in the run, so a resumed run plans exactly what the
interrupted one did not write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, exists, func, not_, or_, select

from monitor.store.scope import Roots, run_roots, url_in_scope
from monitor.store.tables import OCCURRENCES, RESULTS, URLS
from monitor.types import Role, Target, TargetKind, Verdict

FAILING = [v.value for v in Verdict if v.is_failure]
TIMED_OUT = Verdict.TIMEOUT.value


@dataclass(frozen=True, slots=True)
class Planned:
    """A target of this run with its database id."""

    url_id: int
    target: Target


def live_urls(roots: Roots = None) -> ColumnElement[bool]:
    """The URL has an occurrence in the live inventory (occurrences of gone files are deleted),
    in an article under ``roots`` when given."""
    return url_in_scope(roots)


def run_urls(conn: Connection, run_id: int) -> ColumnElement[bool]:
    """``live_urls`` within the roots run ``run_id`` recorded."""
    return live_urls(run_roots(conn, run_id))


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
    timed_out: bool | None = None,
) -> list[Planned]:
    """The next page of targets (by id) that are in the live inventory and lack a result in this run.

    ``stale_before`` (role → cut-off, see ``freshness_cutoffs``) leaves out healthy URLs
    checked recently enough; None or empty checks everything. ``hosts`` and ``id_range``
    (inclusive) restrict the page to one shard of a distributed run; ``exclude_hosts`` leaves
    out the hosts that a run reads through cursors of their own. ``timed_out`` True gives only
    the targets whose last check timed out, False all the others (the dispatcher sends the
    former first); a target's last verdict changes only when its result in this run is
    written, so the two sets stay apart for the whole run.
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
        .where(URLS.c.id > after_id, run_urls(conn, run_id))
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
    if timed_out is True:
        query = query.where(URLS.c.last_verdict == TIMED_OUT)
    elif timed_out is False:
        query = query.where(or_(URLS.c.last_verdict.is_(None), URLS.c.last_verdict != TIMED_OUT))
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
    with engine.connect() as conn:
        query = _planned(conn, select(func.count()).select_from(URLS), run_id, only_failing, stale_before)
        return int(conn.execute(query).scalar_one())


def count_run_targets(
    engine: Engine,
    *,
    run_id: int,
    only_failing: bool = False,
    stale_before: Mapping[str, datetime] | None = None,
) -> int:
    """The run's results so far plus ``count_plan``: its total while it is checking. One statement,
    so a batch of results committed meanwhile is counted once, on one side or the other."""
    with engine.connect() as conn:
        planned = _planned(
            conn, select(func.count()).select_from(URLS), run_id, only_failing, stale_before
        ).scalar_subquery()
        written = (
            select(func.count()).select_from(RESULTS).where(RESULTS.c.run_id == run_id).scalar_subquery()
        )
        return int(conn.execute(select(planned + written)).scalar_one())


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
    with engine.connect() as conn:
        query = _planned(
            conn, select(URLS.c.host, func.count()).select_from(URLS), run_id, only_failing, stale_before
        )
        if hosts is not None:
            query = query.where(URLS.c.host.in_(list(hosts)))
        if id_range is not None:
            query = query.where(URLS.c.id.between(*id_range))
        return {host: int(n) for host, n in conn.execute(query.group_by(URLS.c.host))}


def _planned(
    conn: Connection, query: Any, run_id: int, only_failing: bool, stale_before: Mapping[str, datetime] | None
) -> Any:
    query = query.where(run_urls(conn, run_id)).where(
        ~exists().where(and_(RESULTS.c.run_id == run_id, RESULTS.c.url_id == URLS.c.id))
    )
    if only_failing:
        query = query.where(URLS.c.last_verdict.in_(FAILING))
    if stale_before:
        query = query.where(_needs_check(stale_before))
    return query
