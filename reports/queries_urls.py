"""The sections that list URLs (broken, moved, blocked, images, changes) and the capped list query.

Section membership is disjoint, so a URL shows once among the problem lists:

* ``moved``: moved_permanently; ``blocked``: blocked, rate_limited, timeout (a bot wall or a
  slow night is not a dead link); ``images``: not_image, image_unreadable and the per-occurrence
  size checks (size_mismatch apart from scaled);
* ``broken``: every other verdict of severity error or warning;
* ``acknowledged``: failing URLs acknowledged when checked (``monitor ack``: severity ignore, so
  in no list above), with the acknowledgement.

Problem lists hold severities error and warning only (``ignore`` is silent). ``changes``
compares this run's results with the previous run that has results, counting as failing the
verdicts that are neither good, skipped nor blocked/rate_limited/timeout; flapping URLs
(their latest state change up to this run went to ``flapping``) are listed only as flapping.
Every list keeps its full total; Python only touches the rows that end up in the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, distinct, func, literal, not_, or_, select

from monitor.store.archive import copies as archive_copies
from monitor.store.scope import under_roots, url_in_scope
from monitor.store.tables import ACKS, ARTICLES, OCCURRENCES, RESULTS, SIZE_CHECKS, URLS
from monitor.types import ARCHIVE_VERDICTS, ArchiveSnapshot, Severity, Size, SizeCheck, Verdict
from monitor.urls import redact_url
from reports.model import (
    AckInfo,
    ChangesSection,
    HostGroup,
    ImagesSection,
    OccurrenceItem,
    Redirect,
    UrlItem,
    UrlList,
)
from reports.queries import (
    BLOCKED_VERDICTS,
    BROKEN_VERDICTS,
    FAILING_VERDICTS,
    GOOD_VERDICTS,
    MOVED_VERDICTS,
    PROBLEM_SEVERITIES,
    Scope,
    count,
    errors_sum,
    failing,
    flapping_ids,
    warnings_sum,
)

_IN_CHUNK = 500  # bound for IN (...) lists
_DEAD = frozenset(v.value for v in ARCHIVE_VERDICTS)
PREVIOUS = RESULTS.alias("prev")


def broken(scope: Scope) -> UrlList:
    return problems(scope, BROKEN_VERDICTS, by_host=True)


def moved(scope: Scope) -> UrlList:
    return problems(scope, MOVED_VERDICTS)


def blocked(scope: Scope) -> UrlList:
    return problems(scope, BLOCKED_VERDICTS, by_host=True)


def acknowledged(scope: Scope) -> UrlList:
    """Failing URLs of this run acknowledged when they were checked, each with its acknowledgement."""
    from_ = _this_run().join(ACKS, ACKS.c.url_id == RESULTS.c.url_id)
    where = (
        RESULTS.c.run_id == scope.run_id,
        RESULTS.c.verdict.in_(FAILING_VERDICTS),
        ACKS.c.at <= RESULTS.c.checked_at,
        or_(ACKS.c.until.is_(None), ACKS.c.until > RESULTS.c.checked_at),
    )
    urls = _url_list(scope, from_, where)
    if not urls.urls:
        return urls
    acks = {
        redact_url(row.url): AckInfo(row.reason, row.by, row.at, row.until)
        for row in scope.conn.execute(
            select(URLS.c.url, ACKS.c.reason, ACKS.c.by, ACKS.c.at, ACKS.c.until)
            .select_from(from_)
            .where(*where)
        )
    }
    return replace(urls, urls=tuple(replace(item, ack=acks.get(item.url)) for item in urls.urls))


_FACTS = (
    URLS.c.id,
    URLS.c.url,
    URLS.c.host,
    URLS.c.failing_since,
    URLS.c.consecutive_failures,
    URLS.c.alert_state,
    RESULTS.c.verdict,
    RESULTS.c.severity,
    RESULTS.c.reason,
    RESULTS.c.checked_at,
    RESULTS.c.http_status,
    RESULTS.c.final_url,
    RESULTS.c.redirects,
    RESULTS.c.attempts,
    RESULTS.c.elapsed_ms,
    RESULTS.c.content_type,
    RESULTS.c.bytes_read,
    RESULTS.c.image_format,
    RESULTS.c.image_width,
    RESULTS.c.image_height,
    RESULTS.c.not_modified,
    RESULTS.c.failure,
)


def _this_run() -> FromClause:
    """Result rows joined to their URL; callers filter ``RESULTS.run_id`` so the result indexes drive it."""
    return RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id)


def _any_url(scope: Scope) -> FromClause:
    """URLs with this run's result when there is one (for lists chosen by URL id)."""
    return URLS.outerjoin(RESULTS, and_(RESULTS.c.url_id == URLS.c.id, RESULTS.c.run_id == scope.run_id))


def problems(scope: Scope, verdicts: Sequence[str], *, by_host: bool = False) -> UrlList:
    where = (
        RESULTS.c.run_id == scope.run_id,
        RESULTS.c.verdict.in_(verdicts),
        RESULTS.c.severity.in_(PROBLEM_SEVERITIES),
    )
    return _url_list(scope, _this_run(), where, by_host=by_host)


def _url_list(
    scope: Scope,
    from_: FromClause,
    where: Sequence[ColumnElement[bool]],
    *,
    by_host: bool = False,
    previous: bool = False,
    size_verdict: str | None = None,
) -> UrlList:
    """Count the URLs matching ``where``, list the first ``limit`` with their places (only those with
    size check ``size_verdict`` when given); ``by_host`` groups all of them, not just the listed ones."""
    conn = scope.conn
    total = count(conn, select(func.count()).select_from(from_).where(*where))
    if total == 0:
        return UrlList(0, ())
    prev_col = PREVIOUS.c.verdict if previous else literal(None)
    query = (
        select(*_FACTS, prev_col.label("previous_verdict"))
        .select_from(from_)
        .where(*where)
        .order_by(RESULTS.c.severity, URLS.c.host, URLS.c.url)
    )
    if scope.limit is not None:
        query = query.limit(scope.limit)
    rows = conn.execute(query).all()
    places = _occurrences(scope, [row.id for row in rows], size_verdict)
    copies = archive_copies(conn, [row.id for row in rows if row.verdict in _DEAD])  # "where it is now"
    items = tuple(_url_item(row, *places.get(row.id, ((), 0)), copies.get(row.id)) for row in rows)
    if not by_host:
        return UrlList(total, items)
    hosts, hosts_total = _by_host(scope, from_, where)
    return UrlList(total, items, hosts, hosts_total)


def _url_item(
    row: Any, places: tuple[OccurrenceItem, ...], total: int, archived: ArchiveSnapshot | None
) -> UrlItem:
    checked = row.verdict is not None
    return UrlItem(
        url=redact_url(row.url),  # the inventory keeps userinfo to fetch with; reports never show it
        host=row.host,
        verdict=row.verdict if checked else Verdict.SKIPPED.value,
        severity=row.severity if checked else Severity.IGNORE.value,
        reason=row.reason if checked else "not checked in this run",
        checked_at=row.checked_at,
        http_status=row.http_status,
        final_url=row.final_url,
        redirects=_redirects(row.redirects),
        attempts=row.attempts or 0,
        elapsed_ms=row.elapsed_ms or 0,
        content_type=row.content_type,
        bytes_read=row.bytes_read or 0,
        image_format=row.image_format,
        image_size=_size(row.image_width, row.image_height),
        not_modified=bool(row.not_modified),
        failure=row.failure,
        failing_since=row.failing_since,
        consecutive_failures=row.consecutive_failures,
        alert_state=row.alert_state,
        previous_verdict=row.previous_verdict,
        occurrences=places,
        occurrences_total=total,
        archived=archived,
    )


def _redirects(raw: str | None) -> tuple[Redirect, ...]:
    """Parse the stored JSON hop list leniently: a malformed value must not break a report."""
    try:
        hops = json.loads(raw) if raw else []
    except ValueError:
        return ()
    out = []
    for hop in hops if isinstance(hops, list) else []:
        if isinstance(hop, list | tuple) and hop and isinstance(hop[0], str):
            status = hop[1] if len(hop) > 1 and isinstance(hop[1], int) else None
            location = hop[2] if len(hop) > 2 and isinstance(hop[2], str) else None
            out.append(Redirect(hop[0], status, location))
    return tuple(out)


def _size(width: int | None, height: int | None) -> Size | None:
    """A stored size; the writers store both sides or neither, so a half-known one counts as unknown."""
    return None if width is None or height is None else Size(width, height)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _occurrences(
    scope: Scope, url_ids: Sequence[int], size_verdict: str | None
) -> dict[int, tuple[tuple[OccurrenceItem, ...], int]]:
    """The first ``occurrence_limit`` places of each URL (capped in SQL by a window) and their count."""
    found: dict[int, tuple[list[OccurrenceItem], int]] = {}
    in_roots = under_roots(ARTICLES.c.path, scope.roots)  # a shared URL's places in other roots stay out
    this_run = and_(SIZE_CHECKS.c.occurrence_id == OCCURRENCES.c.id, SIZE_CHECKS.c.run_id == scope.run_id)
    joined = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id).outerjoin(
        SIZE_CHECKS, this_run
    )
    for chunk in _chunks(url_ids):
        where: list[ColumnElement[bool]] = [OCCURRENCES.c.url_id.in_(chunk), in_roots]
        if size_verdict is not None:
            where.append(SIZE_CHECKS.c.verdict == size_verdict)
        ranked = (
            select(
                OCCURRENCES.c.url_id,
                ARTICLES.c.path,
                ARTICLES.c.title,
                OCCURRENCES.c.location,
                OCCURRENCES.c.role,
                OCCURRENCES.c.declared_width,
                OCCURRENCES.c.declared_height,
                SIZE_CHECKS.c.verdict.label("size_check"),
                SIZE_CHECKS.c.actual_width,
                SIZE_CHECKS.c.actual_height,
                func.row_number()
                .over(partition_by=OCCURRENCES.c.url_id, order_by=(ARTICLES.c.path, OCCURRENCES.c.id))
                .label("rank"),
                func.count().over(partition_by=OCCURRENCES.c.url_id).label("places"),
            )
            .select_from(joined)
            .where(*where)
            .subquery()
        )
        query = (
            select(ranked)
            .where(ranked.c.rank <= scope.occurrence_limit)
            .order_by(ranked.c.url_id, ranked.c.rank)
        )
        for row in scope.conn.execute(query):
            item = OccurrenceItem(
                article=row.path,
                title=row.title,
                location=row.location,
                role=row.role,
                declared=_size(row.declared_width, row.declared_height),
                size_check=row.size_check,
                actual=_size(row.actual_width, row.actual_height),
            )
            found.setdefault(row.url_id, ([], row.places))[0].append(item)
    return {url_id: (tuple(items), total) for url_id, (items, total) in found.items()}


def _by_host(
    scope: Scope, from_: FromClause, where: Sequence[ColumnElement[bool]]
) -> tuple[tuple[HostGroup, ...], int]:
    conn = scope.conn
    urls = func.count()
    query = (
        select(URLS.c.host, urls, errors_sum(RESULTS.c.severity), warnings_sum(RESULTS.c.severity))
        .select_from(from_)
        .where(*where)
        .group_by(URLS.c.host)
        .order_by(urls.desc(), URLS.c.host)
    )
    if scope.limit is not None:
        query = query.limit(scope.limit)
    heads = conn.execute(query).all()
    hosts_total = count(conn, select(func.count(distinct(URLS.c.host))).select_from(from_).where(*where))
    verdicts: dict[str, list[tuple[str, int]]] = {}
    places: dict[str, tuple[int, int]] = {}
    for chunk in _chunks([h[0] for h in heads]):
        in_chunk = URLS.c.host.in_(chunk)
        for host, verdict, n in conn.execute(
            select(URLS.c.host, RESULTS.c.verdict, func.count())
            .select_from(from_)
            .where(*where, in_chunk)
            .group_by(URLS.c.host, RESULTS.c.verdict)
        ):
            verdicts.setdefault(host, []).append((verdict, n))
        for host, occ, arts in conn.execute(
            select(URLS.c.host, func.count(OCCURRENCES.c.id), func.count(distinct(OCCURRENCES.c.article_id)))
            .select_from(
                from_.join(OCCURRENCES, OCCURRENCES.c.url_id == URLS.c.id).join(
                    ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id
                )
            )
            .where(*where, in_chunk, under_roots(ARTICLES.c.path, scope.roots))
            .group_by(URLS.c.host)
        ):
            places[host] = (occ, arts)
    groups = tuple(
        HostGroup(
            host=host,
            urls=n,
            errors=err or 0,
            warnings=warn or 0,
            articles=places.get(host, (0, 0))[1],
            occurrences=places.get(host, (0, 0))[0],
            verdicts=tuple(sorted(verdicts.get(host, []), key=lambda kv: (-kv[1], kv[0]))),
        )
        for host, n, err, warn in heads
    )
    return groups, hosts_total


def images(scope: Scope) -> ImagesSection:
    def sized(verdict: SizeCheck) -> UrlList:
        checked = select(SIZE_CHECKS.c.url_id).where(
            SIZE_CHECKS.c.run_id == scope.run_id, SIZE_CHECKS.c.verdict == verdict.value
        )
        return _url_list(scope, _any_url(scope), (URLS.c.id.in_(checked),), size_verdict=verdict.value)

    return ImagesSection(
        size_mismatch=sized(SizeCheck.SIZE_MISMATCH),
        scaled=sized(SizeCheck.SCALED),
        not_image=problems(scope, (Verdict.NOT_IMAGE.value,)),
        image_unreadable=problems(scope, (Verdict.IMAGE_UNREADABLE.value,)),
        placeholder=_placeholders(scope),
    )


def _placeholders(scope: Scope) -> UrlList:
    """placeholder_image: URLs the run marked (``results.mark_placeholders``: the same bytes at
    ``images.placeholder_min_uses`` or more URLs or articles of a host); a warning each, the reason
    naming the group, and ``by_host`` counting the URLs per host."""
    where = (RESULTS.c.run_id == scope.run_id, RESULTS.c.placeholder_uses.is_not(None))
    urls = _url_list(scope, _this_run(), where, by_host=True)
    if not urls.urls:
        return urls
    rows = scope.conn.execute(
        select(URLS.c.url, URLS.c.host, RESULTS.c.image_digest).select_from(_this_run()).where(*where)
    ).all()
    members: dict[tuple[str, str], int] = {}
    for _url, host, digest in rows:
        members[host, digest] = members.get((host, digest), 0) + 1
    reasons = {
        redact_url(url): _placeholder_reason(members[host, digest], digest) for url, host, digest in rows
    }
    warn = Severity.WARNING.value
    items = tuple(
        replace(item, severity=warn, reason=reasons.get(item.url, item.reason)) for item in urls.urls
    )
    return replace(urls, urls=items)


def _placeholder_reason(urls: int, digest: str | None) -> str:
    head, size, kind = (digest or "::").split(":", 2)
    where = (
        f"as {urls - 1} other image URLs" if urls > 1 else "at one URL used as the image of several articles"
    )
    return (
        f"placeholder_image: same bytes {where} of this host ({size} bytes, {kind or 'no type'}, {head[:12]})"
    )


def _newly_mismatched(scope: Scope, previous_id: int) -> UrlList:
    """Image URLs with a place whose size check is size_mismatch now but was not in ``previous_id``."""
    before = SIZE_CHECKS.alias("before")
    had = (
        select(before.c.id)
        .where(
            before.c.run_id == previous_id,
            before.c.occurrence_id == SIZE_CHECKS.c.occurrence_id,
            before.c.verdict == SizeCheck.SIZE_MISMATCH.value,
        )
        .exists()
    )
    new = select(SIZE_CHECKS.c.url_id).where(
        SIZE_CHECKS.c.run_id == scope.run_id, SIZE_CHECKS.c.verdict == SizeCheck.SIZE_MISMATCH.value, ~had
    )
    mismatch = SizeCheck.SIZE_MISMATCH.value
    return _url_list(scope, _any_url(scope), (URLS.c.id.in_(new),), size_verdict=mismatch)


def changes(scope: Scope) -> ChangesSection:
    flapping = flapping_ids(scope.run_id)
    in_scope = url_in_scope(scope.roots)  # flapping URLs of other roots are not this run's
    flap = _url_list(scope, _any_url(scope), (URLS.c.id.in_(flapping), in_scope), previous=False)
    steady = RESULTS.c.url_id.not_in(flapping)
    previous_id = scope.previous_id if scope.previous_id is not None else -1  # -1 matches no run
    with_prev = _this_run().outerjoin(
        PREVIOUS, and_(PREVIOUS.c.run_id == previous_id, PREVIOUS.c.url_id == RESULTS.c.url_id)
    )
    this_run = RESULTS.c.run_id == scope.run_id
    newly = _url_list(
        scope,
        with_prev,
        (this_run, failing(RESULTS), or_(PREVIOUS.c.id.is_(None), not_(failing(PREVIOUS))), steady),
        previous=True,
    )
    mismatched = _newly_mismatched(scope, previous_id)
    if scope.previous_id is None:
        empty = UrlList(0, ())
        return ChangesSection(None, newly, empty, empty, flap, mismatched)
    still = _url_list(
        scope,
        with_prev,
        (this_run, failing(RESULTS), PREVIOUS.c.id.is_not(None), failing(PREVIOUS), steady),
        previous=True,
    )
    recovered = _url_list(
        scope,
        with_prev,
        (
            this_run,
            RESULTS.c.verdict.in_(GOOD_VERDICTS),
            PREVIOUS.c.id.is_not(None),
            failing(PREVIOUS),
            steady,
        ),
        previous=True,
    )
    return ChangesSection(scope.previous_id, newly, recovered, still, flap, mismatched)
