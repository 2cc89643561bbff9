"""The sections that count rather than list URLs: summary and trend, and the inventory's problems.

Findings and corpus errors describe the inventory as of now, not as of the run.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, case, distinct, func, select

from monitor.store.scope import under_roots, url_in_scope
from monitor.store.tables import (
    ARTICLES,
    CORPUS_ERRORS,
    FINDINGS,
    OCCURRENCES,
    RESULTS,
    RUNS,
    SIZE_CHECKS,
    URLS,
)
from monitor.types import Severity, SizeCheck, Verdict
from monitor.urls import redact_url
from reports.model import (
    CorpusErrorItem,
    CorpusErrorsSection,
    Count,
    FindingItem,
    FindingsSection,
    Summary,
    TrendPoint,
)
from reports.queries import (
    BROKEN_VERDICTS,
    IMAGE_VERDICTS,
    PROBLEM_SEVERITIES,
    Scope,
    count,
    errors_sum,
    warnings_sum,
)

_VERDICT_ORDER = {v.value: i for i, v in enumerate(Verdict)}


def summary(scope: Scope) -> Summary:
    conn, run_id = scope.conn, scope.run_id
    in_roots = under_roots(ARTICLES.c.path, scope.roots)
    placed = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
    found = FINDINGS.join(ARTICLES, ARTICLES.c.id == FINDINGS.c.article_id)
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
        .select_from(RESULTS.join(placed, OCCURRENCES.c.url_id == RESULTS.c.url_id))
        .where(RESULTS.c.run_id == run_id, in_roots)
        .group_by(OCCURRENCES.c.role)
        .order_by(role_urls.desc(), OCCURRENCES.c.role)
    )
    problems = func.sum(case((RESULTS.c.severity.in_(PROBLEM_SEVERITIES), 1), else_=0))
    hosts = conn.execute(
        select(URLS.c.host, func.count(), errors_sum(RESULTS.c.severity), warnings_sum(RESULTS.c.severity))
        .select_from(RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id))
        .where(RESULTS.c.run_id == run_id)
        .group_by(URLS.c.host)
        .order_by(problems.desc(), func.count().desc(), URLS.c.host)
        .limit(scope.top_hosts)
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
        articles=count(
            conn,
            select(func.count()).select_from(ARTICLES).where(ARTICLES.c.deleted_at.is_(None), in_roots),
        ),
        occurrences=count(conn, select(func.count()).select_from(placed).where(in_roots)),
        urls=count(conn, select(func.count()).select_from(URLS).where(url_in_scope(scope.roots)))
        if scope.roots is not None
        else count(conn, select(func.count()).select_from(URLS)),
        findings=count(conn, select(func.count()).select_from(found).where(in_roots)),
        corpus_errors=count(
            conn,
            select(func.count())
            .select_from(CORPUS_ERRORS)
            .where(under_roots(CORPUS_ERRORS.c.path, scope.roots)),
        ),
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


def findings(scope: Scope) -> FindingsSection:
    conn = scope.conn
    in_roots = under_roots(ARTICLES.c.path, scope.roots)
    counts = conn.execute(
        select(FINDINGS.c.kind, func.count())
        .select_from(FINDINGS.join(ARTICLES, ARTICLES.c.id == FINDINGS.c.article_id))
        .where(in_roots)
        .group_by(FINDINGS.c.kind)
        .order_by(FINDINGS.c.kind)
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
        .where(in_roots)
        .order_by(FINDINGS.c.kind, ARTICLES.c.path, FINDINGS.c.id)
    )
    if scope.limit is not None:
        query = query.limit(scope.limit)
    items = tuple(
        FindingItem(*row[:5], *(redact_url(v) if v else v for v in row[5:])) for row in conn.execute(query)
    )
    return FindingsSection(tuple((k, n) for k, n in counts), sum(n for _, n in counts), items)


def corpus_errors(scope: Scope) -> CorpusErrorsSection:
    conn = scope.conn
    in_roots = under_roots(CORPUS_ERRORS.c.path, scope.roots)
    query = (
        select(
            CORPUS_ERRORS.c.path,
            CORPUS_ERRORS.c.kind,
            CORPUS_ERRORS.c.message,
            CORPUS_ERRORS.c.line,
            CORPUS_ERRORS.c.column,
            CORPUS_ERRORS.c.first_seen,
            CORPUS_ERRORS.c.last_seen,
        )
        .where(in_roots)
        .order_by(CORPUS_ERRORS.c.path)
    )
    if scope.limit is not None:
        query = query.limit(scope.limit)
    items = tuple(CorpusErrorItem(*row) for row in conn.execute(query))
    total = count(conn, select(func.count()).select_from(CORPUS_ERRORS).where(in_roots))
    return CorpusErrorsSection(total, items)


def _problems_among(verdicts: tuple[str, ...]) -> Any:
    """SQL: how many results of the group are problems (error or warning) with one of ``verdicts``."""
    problem = and_(RESULTS.c.severity.in_(PROBLEM_SEVERITIES), RESULTS.c.verdict.in_(verdicts))
    return func.sum(case((problem, 1), else_=0))


def trend(scope: Scope) -> tuple[TrendPoint, ...]:
    """Checked, errors, warnings, broken URLs and image problems of the last ``trend_runs`` runs up to
    this one, oldest first. Image problems add up the image lists as the report's card does: image
    verdicts, placeholders, and the URLs with a size mismatch or a scaled size."""
    conn = scope.conn
    heads = conn.execute(
        select(RUNS.c.id, RUNS.c.started_at, RUNS.c.state)
        .where(RUNS.c.id <= scope.run_id)
        .order_by(RUNS.c.id.desc())
        .limit(scope.trend_runs)
    ).all()
    ids = [h.id for h in heads]
    counts: dict[int, tuple[int, int, int, int, int]] = {}
    sev = RESULTS.c.severity
    sized: dict[int, int] = {}  # per run: URLs of the size_mismatch list plus those of the scaled list
    for size in (SizeCheck.SIZE_MISMATCH.value, SizeCheck.SCALED.value):
        for run, n in conn.execute(
            select(SIZE_CHECKS.c.run_id, func.count(distinct(SIZE_CHECKS.c.url_id)))
            .where(SIZE_CHECKS.c.run_id.in_(ids), SIZE_CHECKS.c.verdict == size)
            .group_by(SIZE_CHECKS.c.run_id)
        ):
            sized[int(run)] = sized.get(int(run), 0) + int(n)
    placeholders = func.sum(case((RESULTS.c.placeholder_uses.is_not(None), 1), else_=0))
    for run, n, err, warn, broken, images, marked in conn.execute(
        select(
            RESULTS.c.run_id,
            func.count(),
            errors_sum(sev),
            warnings_sum(sev),
            _problems_among(BROKEN_VERDICTS),
            _problems_among(IMAGE_VERDICTS),
            placeholders,
        )
        .where(RESULTS.c.run_id.in_(ids))
        .group_by(RESULTS.c.run_id)
    ):
        image_problems = (images or 0) + (marked or 0) + sized.get(run, 0)
        counts[run] = (n, err or 0, warn or 0, broken or 0, image_problems)
    return tuple(
        TrendPoint(h.id, h.started_at, h.state, *counts.get(h.id, (0, 0, 0, 0, 0))) for h in reversed(heads)
    )
