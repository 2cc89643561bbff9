"""The report aggregate: what one run showed, as plain frozen values that renderers format.

Counting happens in SQL (GROUP BY over the ``(run_id, verdict)`` and ``(run_id, url_id)``
indexes); Python only touches rows that end up in the report. Every list is capped at
``limit`` (occurrences per URL at ``occurrence_limit``) and keeps its full total, so a
report over millions of result rows stays fast and says how much it left out.

Section membership is disjoint, so a URL shows once among the problem lists:

* ``moved``: moved_permanently; ``blocked``: blocked, rate_limited, timeout (a bot wall or a
  slow night is not a dead link); ``images``: not_image, image_unreadable and the per-occurrence
  size checks (size_mismatch apart from scaled);
* ``broken``: every other verdict of severity error or warning.

Problem lists hold severities error and warning only (``ignore`` is silent). ``changes``
compares this run's results with the previous run that has results, counting as failing the
verdicts that are neither good, skipped nor blocked/rate_limited/timeout; flapping URLs
(their latest state change up to this run went to ``flapping``) are listed only as flapping.
Findings and corpus errors describe the inventory as of now, not as of the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    and_,
    case,
    distinct,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
)

from monitor.store.tables import (
    ARTICLES,
    CORPUS_ERRORS,
    FINDINGS,
    OCCURRENCES,
    RESULTS,
    RUNS,
    SIZE_CHECKS,
    STATE_CHANGES,
    URLS,
)
from monitor.types import Severity, SizeCheck, Verdict
from monitor.urls import redact_url

SECTIONS: tuple[str, ...] = (
    "summary",
    "broken",
    "images",
    "moved",
    "changes",
    "blocked",
    "findings",
    "corpus_errors",
    "trend",
)
DEFAULT_LIMIT = 1000
DEFAULT_OCCURRENCE_LIMIT = 50
DEFAULT_TOP_HOSTS = 10

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
_VERDICT_ORDER = {v.value: i for i, v in enumerate(Verdict)}
_IN_CHUNK = 500  # bound for IN (...) lists

PREVIOUS = RESULTS.alias("prev")


class ReportError(Exception):
    """The report cannot be built as asked (no run yet, unknown run id or section)."""


@dataclass(frozen=True, slots=True)
class Dims:
    """A width × height where either side may be unknown."""

    width: int | None
    height: int | None

    def __str__(self) -> str:
        return f"{'?' if self.width is None else self.width}x{'?' if self.height is None else self.height}"


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    status: int | None
    location: str | None


@dataclass(frozen=True, slots=True)
class OccurrenceItem:
    """Where a URL is written, plus this run's size check of that place (images only)."""

    article: str
    title: str | None
    location: str
    role: str
    declared: Dims | None
    size_check: str | None
    actual: Dims | None


@dataclass(frozen=True, slots=True)
class UrlItem:
    """One URL with this run's facts and verdict, its failure history and where it is used."""

    url: str
    host: str
    verdict: str
    severity: str
    reason: str
    checked_at: datetime | None
    http_status: int | None
    final_url: str | None
    redirects: tuple[Redirect, ...]
    attempts: int
    elapsed_ms: int
    content_type: str | None
    bytes_read: int
    image_format: str | None
    image_size: Dims | None
    not_modified: bool
    failure: str | None
    failing_since: datetime | None
    consecutive_failures: int
    alert_state: str
    previous_verdict: str | None
    occurrences: tuple[OccurrenceItem, ...]
    occurrences_total: int

    @property
    def occurrences_omitted(self) -> int:
        return self.occurrences_total - len(self.occurrences)


@dataclass(frozen=True, slots=True)
class HostGroup:
    """All listed problems of one host on one line, so a dead host reads as one problem."""

    host: str
    urls: int
    errors: int
    warnings: int
    articles: int
    occurrences: int
    verdicts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ArticleGroup:
    """The problems of one article, each with its exact frontmatter location."""

    article: str
    title: str | None
    entries: tuple[tuple[OccurrenceItem, UrlItem], ...]


@dataclass(frozen=True, slots=True)
class UrlList:
    """A capped list of URLs; ``total`` counts all of them, ``by_host`` aggregates all of them."""

    total: int
    urls: tuple[UrlItem, ...]
    by_host: tuple[HostGroup, ...] = ()
    hosts_total: int = 0

    @property
    def omitted(self) -> int:
        return self.total - len(self.urls)

    @property
    def hosts_omitted(self) -> int:
        return self.hosts_total - len(self.by_host)

    def by_article(self) -> tuple[ArticleGroup, ...]:
        """The listed URLs regrouped per article, articles by path, entries in document order."""
        groups: dict[str, tuple[str | None, list[tuple[OccurrenceItem, UrlItem]]]] = {}
        for item in self.urls:
            for occ in item.occurrences:
                groups.setdefault(occ.article, (occ.title, []))[1].append((occ, item))
        return tuple(
            ArticleGroup(path, title, tuple(sorted(entries, key=lambda e: _natural(e[0].location))))
            for path, (title, entries) in sorted(groups.items())
        )


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``related[2]`` before ``related[10]``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


@dataclass(frozen=True, slots=True)
class Count:
    """URLs of one role or host in the run, and how many of them are errors or warnings."""

    name: str
    urls: int
    errors: int
    warnings: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    state: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    total_targets: int
    checked: int
    error: str | None
    previous_run_id: int | None


@dataclass(frozen=True, slots=True)
class Summary:
    verdicts: tuple[tuple[str, int], ...]
    checked: int
    errors: int
    warnings: int
    roles: tuple[Count, ...]
    hosts: tuple[Count, ...]
    hosts_total: int
    articles: int
    occurrences: int
    urls: int
    findings: int
    corpus_errors: int


@dataclass(frozen=True, slots=True)
class ImagesSection:
    size_mismatch: UrlList
    scaled: UrlList
    not_image: UrlList
    image_unreadable: UrlList


@dataclass(frozen=True, slots=True)
class ChangesSection:
    previous_run_id: int | None
    newly_broken: UrlList
    recovered: UrlList
    still_broken: UrlList
    flapping: UrlList


@dataclass(frozen=True, slots=True)
class FindingItem:
    article: str
    title: str | None
    location: str
    kind: str
    message: str
    value: str | None
    expected: str | None


@dataclass(frozen=True, slots=True)
class FindingsSection:
    counts: tuple[tuple[str, int], ...]
    total: int
    items: tuple[FindingItem, ...]

    @property
    def omitted(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True, slots=True)
class CorpusErrorItem:
    path: str
    kind: str
    message: str
    line: int | None
    column: int | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class CorpusErrorsSection:
    total: int
    items: tuple[CorpusErrorItem, ...]

    @property
    def omitted(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    run_id: int
    started_at: datetime
    state: str
    checked: int
    errors: int
    warnings: int

    @property
    def problems(self) -> int:
        return self.errors + self.warnings


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything one report shows; sections not asked for are None."""

    generated_at: datetime
    run: RunInfo
    sections: tuple[str, ...]
    limit: int | None
    summary: Summary | None = None
    broken: UrlList | None = None
    images: ImagesSection | None = None
    moved: UrlList | None = None
    changes: ChangesSection | None = None
    blocked: UrlList | None = None
    findings: FindingsSection | None = None
    corpus_errors: CorpusErrorsSection | None = None
    trend: tuple[TrendPoint, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Ctx:
    conn: Connection
    run_id: int
    previous_id: int | None
    limit: int | None
    occurrence_limit: int
    top_hosts: int


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
) -> ReportData:
    """Aggregate run ``run_id`` (default: the latest run) into a ReportData.

    ``limit`` caps every list (None: no cap), ``occurrence_limit`` the places listed per URL;
    ``now`` fixes ``generated_at`` (tests, reproducible files).
    """
    wanted = _sections(sections)
    if (limit is not None and limit < 1) or min(occurrence_limit, trend_runs, top_hosts) < 1:
        raise ReportError("limit, occurrence_limit, trend_runs and top_hosts must be at least 1")
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one snapshot for every query (SQLite's read already is)
            conn.execution_options(isolation_level="REPEATABLE READ")
        run = _run(conn, run_id)
        ctx = _Ctx(conn, run.id, run.previous_run_id, limit, occurrence_limit, top_hosts)
        return ReportData(
            generated_at=now or datetime.now(UTC),
            run=run,
            sections=wanted,
            limit=limit,
            summary=_summary(ctx) if "summary" in wanted else None,
            broken=_problems(ctx, BROKEN_VERDICTS, by_host=True) if "broken" in wanted else None,
            images=_images(ctx) if "images" in wanted else None,
            moved=_problems(ctx, MOVED_VERDICTS) if "moved" in wanted else None,
            changes=_changes(ctx) if "changes" in wanted else None,
            blocked=_problems(ctx, BLOCKED_VERDICTS, by_host=True) if "blocked" in wanted else None,
            findings=_findings(ctx) if "findings" in wanted else None,
            corpus_errors=_corpus_errors(ctx) if "corpus_errors" in wanted else None,
            trend=_trend(conn, run.id, trend_runs) if "trend" in wanted else None,
        )


def _sections(sections: Sequence[str] | None) -> tuple[str, ...]:
    if sections is None:
        return SECTIONS
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ReportError(
            f"unknown report section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return tuple(s for s in SECTIONS if s in sections)


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


def _is_error(sev: Any) -> Any:
    return func.sum(case((sev == Severity.ERROR.value, 1), else_=0))


def _is_warning(sev: Any) -> Any:
    return func.sum(case((sev == Severity.WARNING.value, 1), else_=0))


def _summary(ctx: _Ctx) -> Summary:
    conn, run_id = ctx.conn, ctx.run_id
    per_verdict: dict[str, int] = {}
    severities: dict[str, int] = {}
    rows = conn.execute(
        select(RESULTS.c.verdict, RESULTS.c.severity, func.count())
        .where(RESULTS.c.run_id == run_id)
        .group_by(RESULTS.c.verdict, RESULTS.c.severity)
    )
    for verdict, severity, n in rows:
        per_verdict[verdict] = per_verdict.get(verdict, 0) + n
        severities[severity] = severities.get(severity, 0) + n
    if not per_verdict:  # results pruned: the run row still has its counts
        per_verdict = _stored_counts(conn, run_id)
    role_urls = func.count(distinct(RESULTS.c.url_id))
    roles = conn.execute(
        select(
            OCCURRENCES.c.role,
            role_urls,
            func.count(distinct(case((RESULTS.c.severity == Severity.ERROR.value, RESULTS.c.url_id)))),
            func.count(distinct(case((RESULTS.c.severity == Severity.WARNING.value, RESULTS.c.url_id)))),
        )
        .select_from(RESULTS.join(OCCURRENCES, OCCURRENCES.c.url_id == RESULTS.c.url_id))
        .where(RESULTS.c.run_id == run_id)
        .group_by(OCCURRENCES.c.role)
        .order_by(role_urls.desc(), OCCURRENCES.c.role)
    )
    problems = func.sum(case((RESULTS.c.severity.in_(PROBLEM_SEVERITIES), 1), else_=0))
    hosts = conn.execute(
        select(URLS.c.host, func.count(), _is_error(RESULTS.c.severity), _is_warning(RESULTS.c.severity))
        .select_from(RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id))
        .where(RESULTS.c.run_id == run_id)
        .group_by(URLS.c.host)
        .order_by(problems.desc(), func.count().desc(), URLS.c.host)
        .limit(ctx.top_hosts)
    )
    hosts_total = conn.execute(
        select(func.count(distinct(URLS.c.host)))
        .select_from(RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id))
        .where(RESULTS.c.run_id == run_id)
    ).scalar_one()
    return Summary(
        verdicts=tuple(sorted(per_verdict.items(), key=lambda kv: (_VERDICT_ORDER.get(kv[0], 99), kv[0]))),
        checked=sum(per_verdict.values()),
        errors=severities.get(Severity.ERROR.value, 0),
        warnings=severities.get(Severity.WARNING.value, 0),
        roles=tuple(Count(role, n, err, warn) for role, n, err, warn in roles),
        hosts=tuple(Count(host, n, err or 0, warn or 0) for host, n, err, warn in hosts),
        hosts_total=hosts_total,
        articles=_count(
            conn, select(func.count()).select_from(ARTICLES).where(ARTICLES.c.deleted_at.is_(None))
        ),
        occurrences=_count(conn, select(func.count()).select_from(OCCURRENCES)),
        urls=_count(conn, select(func.count()).select_from(URLS)),
        findings=_count(conn, select(func.count()).select_from(FINDINGS)),
        corpus_errors=_count(conn, select(func.count()).select_from(CORPUS_ERRORS)),
    )


def _stored_counts(conn: Connection, run_id: int) -> dict[str, int]:
    raw = conn.execute(select(RUNS.c.counts).where(RUNS.c.id == run_id)).scalar_one()
    try:
        counts = json.loads(raw or "{}")
    except ValueError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {str(k): int(v) for k, v in counts.items() if isinstance(v, int) and v}


def _count(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())


# --- URL lists -------------------------------------------------------------------------------------

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


def _any_url(ctx: _Ctx) -> FromClause:
    """URLs with this run's result when there is one (for lists chosen by URL id)."""
    return URLS.outerjoin(RESULTS, and_(RESULTS.c.url_id == URLS.c.id, RESULTS.c.run_id == ctx.run_id))


def _problems(ctx: _Ctx, verdicts: Sequence[str], *, by_host: bool = False) -> UrlList:
    where = (
        RESULTS.c.run_id == ctx.run_id,
        RESULTS.c.verdict.in_(verdicts),
        RESULTS.c.severity.in_(PROBLEM_SEVERITIES),
    )
    return _url_list(ctx, _this_run(), where, by_host=by_host)


def _url_list(
    ctx: _Ctx,
    from_: FromClause,
    where: Sequence[ColumnElement[bool]],
    *,
    by_host: bool = False,
    previous: bool = False,
    size_verdict: str | None = None,
) -> UrlList:
    """Count the URLs matching ``where``, list the first ``limit`` with their places (only those with
    size check ``size_verdict`` when given); ``by_host`` groups all of them, not just the listed ones."""
    conn = ctx.conn
    total = _count(conn, select(func.count()).select_from(from_).where(*where))
    if total == 0:
        return UrlList(0, ())
    prev_col = PREVIOUS.c.verdict if previous else literal(None)
    query = (
        select(*_FACTS, prev_col.label("previous_verdict"))
        .select_from(from_)
        .where(*where)
        .order_by(RESULTS.c.severity, URLS.c.host, URLS.c.url)
    )
    if ctx.limit is not None:
        query = query.limit(ctx.limit)
    rows = conn.execute(query).all()
    places = _occurrences(ctx, [row.id for row in rows], size_verdict)
    items = tuple(_url_item(row, *places.get(row.id, ((), 0))) for row in rows)
    if not by_host:
        return UrlList(total, items)
    hosts, hosts_total = _by_host(ctx, from_, where)
    return UrlList(total, items, hosts, hosts_total)


def _url_item(row: Any, occurrences: tuple[OccurrenceItem, ...], occurrences_total: int) -> UrlItem:
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
        image_size=_dims(row.image_width, row.image_height),
        not_modified=bool(row.not_modified),
        failure=row.failure,
        failing_since=row.failing_since,
        consecutive_failures=row.consecutive_failures,
        alert_state=row.alert_state,
        previous_verdict=row.previous_verdict,
        occurrences=occurrences,
        occurrences_total=occurrences_total,
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


def _dims(width: int | None, height: int | None) -> Dims | None:
    return None if width is None and height is None else Dims(width, height)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _occurrences(
    ctx: _Ctx, url_ids: Sequence[int], size_verdict: str | None
) -> dict[int, tuple[tuple[OccurrenceItem, ...], int]]:
    """The first ``occurrence_limit`` places of each URL (capped in SQL by a window) and their count."""
    found: dict[int, tuple[list[OccurrenceItem], int]] = {}
    joined = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id).outerjoin(
        SIZE_CHECKS, and_(SIZE_CHECKS.c.occurrence_id == OCCURRENCES.c.id, SIZE_CHECKS.c.run_id == ctx.run_id)
    )
    for chunk in _chunks(url_ids):
        where = [OCCURRENCES.c.url_id.in_(chunk)]
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
            .where(ranked.c.rank <= ctx.occurrence_limit)
            .order_by(ranked.c.url_id, ranked.c.rank)
        )
        for row in ctx.conn.execute(query):
            item = OccurrenceItem(
                article=row.path,
                title=row.title,
                location=row.location,
                role=row.role,
                declared=_dims(row.declared_width, row.declared_height),
                size_check=row.size_check,
                actual=_dims(row.actual_width, row.actual_height),
            )
            found.setdefault(row.url_id, ([], row.places))[0].append(item)
    return {url_id: (tuple(items), total) for url_id, (items, total) in found.items()}


def _by_host(
    ctx: _Ctx, from_: FromClause, where: Sequence[ColumnElement[bool]]
) -> tuple[tuple[HostGroup, ...], int]:
    conn = ctx.conn
    urls = func.count()
    query = (
        select(URLS.c.host, urls, _is_error(RESULTS.c.severity), _is_warning(RESULTS.c.severity))
        .select_from(from_)
        .where(*where)
        .group_by(URLS.c.host)
        .order_by(urls.desc(), URLS.c.host)
    )
    if ctx.limit is not None:
        query = query.limit(ctx.limit)
    heads = conn.execute(query).all()
    hosts_total = _count(conn, select(func.count(distinct(URLS.c.host))).select_from(from_).where(*where))
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
            .select_from(from_.join(OCCURRENCES, OCCURRENCES.c.url_id == URLS.c.id))
            .where(*where, in_chunk)
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


def _images(ctx: _Ctx) -> ImagesSection:
    def sized(verdict: SizeCheck) -> UrlList:
        checked = select(SIZE_CHECKS.c.url_id).where(
            SIZE_CHECKS.c.run_id == ctx.run_id, SIZE_CHECKS.c.verdict == verdict.value
        )
        return _url_list(ctx, _any_url(ctx), (URLS.c.id.in_(checked),), size_verdict=verdict.value)

    return ImagesSection(
        size_mismatch=sized(SizeCheck.SIZE_MISMATCH),
        scaled=sized(SizeCheck.SCALED),
        not_image=_problems(ctx, (Verdict.NOT_IMAGE.value,)),
        image_unreadable=_problems(ctx, (Verdict.IMAGE_UNREADABLE.value,)),
    )


def _failing(table: Any) -> ColumnElement[bool]:
    return and_(table.c.verdict.in_(CHANGE_FAILING_VERDICTS), table.c.severity.in_(PROBLEM_SEVERITIES))


def _flapping_ids(run_id: int) -> Any:
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


def _changes(ctx: _Ctx) -> ChangesSection:
    flapping = _flapping_ids(ctx.run_id)
    flap = _url_list(ctx, _any_url(ctx), (URLS.c.id.in_(flapping),), previous=False)
    steady = RESULTS.c.url_id.not_in(flapping)
    previous_id = ctx.previous_id if ctx.previous_id is not None else -1  # -1 matches no run
    with_prev = _this_run().outerjoin(
        PREVIOUS, and_(PREVIOUS.c.run_id == previous_id, PREVIOUS.c.url_id == RESULTS.c.url_id)
    )
    this_run = RESULTS.c.run_id == ctx.run_id
    newly = _url_list(
        ctx,
        with_prev,
        (this_run, _failing(RESULTS), or_(PREVIOUS.c.id.is_(None), not_(_failing(PREVIOUS))), steady),
        previous=True,
    )
    if ctx.previous_id is None:
        empty = UrlList(0, ())
        return ChangesSection(None, newly, empty, empty, flap)
    still = _url_list(
        ctx,
        with_prev,
        (this_run, _failing(RESULTS), PREVIOUS.c.id.is_not(None), _failing(PREVIOUS), steady),
        previous=True,
    )
    recovered = _url_list(
        ctx,
        with_prev,
        (
            this_run,
            RESULTS.c.verdict.in_(GOOD_VERDICTS),
            PREVIOUS.c.id.is_not(None),
            _failing(PREVIOUS),
            steady,
        ),
        previous=True,
    )
    return ChangesSection(ctx.previous_id, newly, recovered, still, flap)


# --- inventory problems and trend -------------------------------------------------------------------


def _findings(ctx: _Ctx) -> FindingsSection:
    conn = ctx.conn
    counts = conn.execute(
        select(FINDINGS.c.kind, func.count()).group_by(FINDINGS.c.kind).order_by(FINDINGS.c.kind)
    ).all()
    query = (
        select(
            ARTICLES.c.path,
            ARTICLES.c.title,
            FINDINGS.c.location,
            FINDINGS.c.kind,
            FINDINGS.c.message,
            FINDINGS.c.value,
            FINDINGS.c.expected,
        )
        .select_from(FINDINGS.join(ARTICLES, ARTICLES.c.id == FINDINGS.c.article_id))
        .order_by(FINDINGS.c.kind, ARTICLES.c.path, FINDINGS.c.id)
    )
    if ctx.limit is not None:
        query = query.limit(ctx.limit)
    items = tuple(
        FindingItem(*row[:5], *(redact_url(v) if v else v for v in row[5:])) for row in conn.execute(query)
    )
    return FindingsSection(tuple((k, n) for k, n in counts), sum(n for _, n in counts), items)


def _corpus_errors(ctx: _Ctx) -> CorpusErrorsSection:
    conn = ctx.conn
    query = select(
        CORPUS_ERRORS.c.path,
        CORPUS_ERRORS.c.kind,
        CORPUS_ERRORS.c.message,
        CORPUS_ERRORS.c.line,
        CORPUS_ERRORS.c.column,
        CORPUS_ERRORS.c.first_seen,
        CORPUS_ERRORS.c.last_seen,
    ).order_by(CORPUS_ERRORS.c.path)
    if ctx.limit is not None:
        query = query.limit(ctx.limit)
    items = tuple(CorpusErrorItem(*row) for row in conn.execute(query))
    return CorpusErrorsSection(_count(conn, select(func.count()).select_from(CORPUS_ERRORS)), items)


def _trend(conn: Connection, run_id: int, runs: int) -> tuple[TrendPoint, ...]:
    """Checked, errors and warnings of the last ``runs`` runs up to this one, oldest first."""
    heads = conn.execute(
        select(RUNS.c.id, RUNS.c.started_at, RUNS.c.state)
        .where(RUNS.c.id <= run_id)
        .order_by(RUNS.c.id.desc())
        .limit(runs)
    ).all()
    ids = [h.id for h in heads]
    counts: dict[int, tuple[int, int, int]] = {}
    for run, n, err, warn in conn.execute(
        select(RESULTS.c.run_id, func.count(), _is_error(RESULTS.c.severity), _is_warning(RESULTS.c.severity))
        .where(RESULTS.c.run_id.in_(ids))
        .group_by(RESULTS.c.run_id)
    ):
        counts[run] = (n, err or 0, warn or 0)
    return tuple(
        TrendPoint(h.id, h.started_at, h.state, *counts.get(h.id, (0, 0, 0))) for h in reversed(heads)
    )
