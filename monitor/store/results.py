"""Result batches: what the batch writer reads before judging, and the one transaction it writes.

Everything a run learns reaches the database through ``write_batch`` — one transaction
per batch — so a crash loses at most the batch in hand. Result rows are unique per
(run, URL) and inserted with ON CONFLICT DO NOTHING, so a resumed or retried batch never
duplicates them. ``previous_results`` gives the facts a 304 answer keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select, update

from monitor.store.db import executemany, insert_ignore
from monitor.store.tables import ARTICLES, OCCURRENCES, RESULTS, RUNS, SIZE_CHECKS, STATE_CHANGES, URLS
from monitor.types import Role, Size

IMAGE_ROLES = tuple(role.value for role in Role if role.is_image)
# the pages that carry their item's title (title drift)
TITLED_ROLES = frozenset({Role.ORIGINAL, Role.WEB, Role.AMP, Role.CDN_AMP})


@dataclass(frozen=True, slots=True)
class OccurrenceInfo:
    id: int
    article: str
    location: str
    role: Role
    declared: Size | None
    title: str | None = None  # the title its page should carry (its item's; the article's by default)


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
            OCCURRENCES.c.title,
            OCCURRENCES.c.related,
            ARTICLES.c.title,
        )
        .select_from(OCCURRENCES.join(ARTICLES, OCCURRENCES.c.article_id == ARTICLES.c.id))
        .where(OCCURRENCES.c.url_id.in_(list(url_ids)))
        .order_by(OCCURRENCES.c.url_id, OCCURRENCES.c.id)
    )
    for uid, oid, path, location, role, w, h, title, related, article_title in conn.execute(query):
        declared = Size(w, h) if w is not None and h is not None else None
        kind = Role(role)
        if title is None and not related and kind in TITLED_ROLES:  # stored before titles were
            title = article_title
        out.setdefault(uid, []).append(OccurrenceInfo(oid, path, location, kind, declared, title))
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
    return {r[0]: UrlState(*tuple(r)) for r in rows}


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
        executemany(conn, "result", lambda: insert_ignore(conn, RESULTS), batch.results)
    if batch.size_checks:
        executemany(conn, "size_check", lambda: insert_ignore(conn, SIZE_CHECKS), batch.size_checks)
    if batch.url_updates:
        keys = [k for k in batch.url_updates[0] if k != "b_id"]
        executemany(
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


def mark_placeholders(conn: Connection, run_id: int, min_uses: int) -> int:
    """Mark the run's image results whose bytes (``image_digest``) the host serves at ``min_uses`` or
    more distinct URLs, or as the image of that many distinct articles: a default picture served in
    place of the real ones (one default URL standing in for many articles' photos counts too).

    Sets ``placeholder_uses`` to the larger count (NULL elsewhere); returns the rows marked. Run
    once the run's results are all written (it looks at all of them); ``min_uses = 0`` is off.
    """
    conn.execute(
        update(RESULTS)
        .where(RESULTS.c.run_id == run_id, RESULTS.c.placeholder_uses.is_not(None))
        .values(placeholder_uses=None)
    )
    if min_uses <= 0:
        return 0
    urls = func.count(func.distinct(RESULTS.c.url_id))
    articles = func.count(func.distinct(OCCURRENCES.c.article_id))
    groups = (
        select(
            URLS.c.host.label("host"),
            RESULTS.c.image_digest.label("digest"),
            case((urls >= articles, urls), else_=articles).label("uses"),
        )
        .select_from(
            RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id).outerjoin(
                OCCURRENCES,
                and_(OCCURRENCES.c.url_id == RESULTS.c.url_id, OCCURRENCES.c.role.in_(IMAGE_ROLES)),
            )
        )
        .where(RESULTS.c.run_id == run_id, RESULTS.c.image_digest.is_not(None))
        .group_by(URLS.c.host, RESULTS.c.image_digest)
        .having(or_(urls >= min_uses, articles >= min_uses))
        .subquery()
    )
    # one statement, not one per (host, digest): a corpus with a few stock images per host has
    # hundreds of groups, and a round trip each made this the longest step of a run's close
    same_host = select(URLS.c.id).where(URLS.c.id == RESULTS.c.url_id, URLS.c.host == groups.c.host)
    return int(
        conn.execute(
            update(RESULTS)
            .where(
                RESULTS.c.run_id == run_id,
                RESULTS.c.image_digest == groups.c.digest,
                same_host.exists(),
            )
            .values(placeholder_uses=groups.c.uses)
        ).rowcount
    )
