"""Queries behind `monitor history URL` and `monitor status`: a URL's timeline and the corpus at a glance."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from monitor.store.models import (
    CorpusErrorRow,
)
from monitor.store.tables import ARTICLES, FINDINGS, OCCURRENCES, RESULTS, RUNS, URLS
from monitor.types import Severity, Verdict
from monitor.urls import InvalidUrl, normalise_url, redact_url

STATE_COLUMNS = (
    "last_checked",
    "last_verdict",
    "last_status",
    "last_ok",
    "failing_since",
    "consecutive_failures",
    "alert_state",
)


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def url_history(engine: Engine, raw_url: str, runs: int = 30) -> dict[str, Any] | None:
    """The URL's current state, occurrences and last ``runs`` results; None when unknown."""
    url = normalise_url(raw_url)
    if isinstance(url, InvalidUrl):
        url = raw_url.strip()
    with engine.connect() as conn:
        row = conn.execute(select(URLS).where(URLS.c.url == url)).mappings().first()
        if row is None:
            return None
        uid = row["id"]
        timeline = conn.execute(
            select(
                RESULTS.c.run_id,
                RESULTS.c.checked_at,
                RESULTS.c.verdict,
                RESULTS.c.severity,
                RESULTS.c.http_status,
                RESULTS.c.elapsed_ms,
                RESULTS.c.image_width,
                RESULTS.c.image_height,
                RESULTS.c.not_modified,
                RESULTS.c.reason,
            )
            .where(RESULTS.c.url_id == uid)
            .order_by(RESULTS.c.run_id.desc())
            .limit(runs)
        ).all()
        occurrences = conn.execute(
            select(
                ARTICLES.c.path,
                OCCURRENCES.c.location,
                OCCURRENCES.c.role,
                OCCURRENCES.c.declared_width,
                OCCURRENCES.c.declared_height,
            )
            .select_from(OCCURRENCES.join(ARTICLES, OCCURRENCES.c.article_id == ARTICLES.c.id))
            .where(OCCURRENCES.c.url_id == uid)
            .order_by(ARTICLES.c.path, OCCURRENCES.c.id)
        ).all()
    return {
        "url": redact_url(row["url"]),  # credentials stay in the inventory, never on screen
        "host": row["host"],
        "kind": row["kind"],
        "first_seen": _iso(row["first_seen"]),
        "state": {k: _iso(row[k]) for k in STATE_COLUMNS},
        "occurrences": [
            {
                "article": p,
                "location": loc,
                "role": role,
                "declared": f"{w}x{h}" if w is not None and h is not None else None,
            }
            for p, loc, role, w, h in occurrences
        ],
        "timeline": [
            {
                "run_id": run_id,
                "checked_at": _iso(at),
                "verdict": verdict,
                "severity": severity,
                "http_status": status,
                "elapsed_ms": elapsed,
                "size": f"{w}x{h}" if w is not None and h is not None else None,
                "not_modified": bool(nm),
                "reason": reason,
            }
            for run_id, at, verdict, severity, status, elapsed, w, h, nm, reason in reversed(timeline)
        ],
    }


def corpus_status(engine: Engine) -> dict[str, Any]:
    """Last run summary, current problems by verdict and kind, and the oldest unresolved breakage."""
    with engine.connect() as conn:
        last = conn.execute(select(RUNS).order_by(RUNS.c.id.desc()).limit(1)).mappings().first()
        live = select(OCCURRENCES.c.url_id).where(OCCURRENCES.c.url_id.is_not(None)).distinct().subquery()
        problems: dict[str, int] = dict(
            conn.execute(
                select(URLS.c.last_verdict, func.count())
                .join(live, live.c.url_id == URLS.c.id)
                .where(URLS.c.last_severity.in_([Severity.ERROR.value, Severity.WARNING.value]))
                .group_by(URLS.c.last_verdict)
            ).all()
        )
        oldest = conn.execute(
            select(URLS.c.url, URLS.c.failing_since, URLS.c.consecutive_failures, URLS.c.last_verdict)
            .join(live, live.c.url_id == URLS.c.id)
            .where(URLS.c.failing_since.is_not(None), URLS.c.last_severity == Severity.ERROR.value)
            .order_by(URLS.c.failing_since)
            .limit(5)
        ).all()
        findings: dict[str, int] = dict(
            conn.execute(select(FINDINGS.c.kind, func.count()).group_by(FINDINGS.c.kind)).all()
        )
        errors = conn.execute(select(func.count()).select_from(CorpusErrorRow)).scalar_one()
        files = conn.execute(
            select(func.count()).select_from(ARTICLES).where(ARTICLES.c.deleted_at.is_(None))
        ).scalar_one()
        urls = conn.execute(select(func.count()).select_from(live)).scalar_one()
    return {
        "last_run": None
        if last is None
        else {
            "id": last["id"],
            "state": last["state"],
            "trigger": last["trigger"],
            "started_at": _iso(last["started_at"]),
            "finished_at": _iso(last["finished_at"]),
            "checked": last["checked"],
            "total_targets": last["total_targets"],
            "counts": json.loads(last["counts"] or "{}"),
        },
        "files": files,
        "urls": urls,
        "problems": {k: problems[k] for k in sorted(problems) if k in {v.value for v in Verdict}},
        "findings": findings,
        "corpus_errors": errors,
        "oldest_unresolved": [
            {"url": redact_url(u), "failing_since": _iso(since), "runs": n, "verdict": v}
            for u, since, n, v in oldest
        ],
    }
