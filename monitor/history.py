"""`monitor history URL` and `monitor status`: a URL's timeline, and the corpus at a glance.

Both read the database only; text goes through ``inert`` because URLs and titles are
other people's input.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from monitor.store.models import (
    ArticleRow,
    CorpusErrorRow,
    FindingRow,
    OccurrenceRow,
    ResultRow,
    RunRow,
    UrlRow,
)
from monitor.textsafe import inert
from monitor.types import Severity, Verdict
from monitor.urls import InvalidUrl, normalise_url, redact_url

A = ArticleRow.__table__
OCC = OccurrenceRow.__table__
R = ResultRow.__table__
RUN = RunRow.__table__
U = UrlRow.__table__
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
        row = conn.execute(select(U).where(U.c.url == url)).mappings().first()
        if row is None:
            return None
        uid = row["id"]
        timeline = conn.execute(
            select(
                R.c.run_id,
                R.c.checked_at,
                R.c.verdict,
                R.c.severity,
                R.c.http_status,
                R.c.elapsed_ms,
                R.c.image_width,
                R.c.image_height,
                R.c.not_modified,
                R.c.reason,
            )
            .where(R.c.url_id == uid)
            .order_by(R.c.run_id.desc())
            .limit(runs)
        ).all()
        occurrences = conn.execute(
            select(A.c.path, OCC.c.location, OCC.c.role, OCC.c.declared_width, OCC.c.declared_height)
            .select_from(OCC.join(A, OCC.c.article_id == A.c.id))
            .where(OCC.c.url_id == uid)
            .order_by(A.c.path, OCC.c.id)
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


def print_history(engine: Engine, raw_url: str, *, runs: int, as_json: bool) -> int:
    """Print the history; exit code 1 when the URL is not in the inventory."""
    data = url_history(engine, raw_url, runs)
    if data is None:
        print(
            f"error: {inert(raw_url)} is not in the inventory (run `monitor links` or `monitor check`)",
            file=sys.stderr,
        )
        return 1
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    out = [
        f"{inert(data['url'])}  ({data['kind']}, host {inert(data['host'])}, first seen {data['first_seen']})"
    ]
    state = data["state"]
    out.append(
        "state: {alert_state}; last {last_verdict} (HTTP {last_status}) at {last_checked}; "
        "last ok {last_ok}; failing since {failing_since} ({consecutive_failures} runs)".format(**state)
    )
    out.append(f"occurrences ({len(data['occurrences'])}):")
    for occ in data["occurrences"]:
        size = f"  declared {occ['declared']}" if occ["declared"] else ""
        out.append(f"  {inert(occ['article'])}  {occ['location']}  {occ['role']}{size}")
    out.append(f"timeline ({len(data['timeline'])} runs, oldest first):")
    for t in data["timeline"]:
        size = f"  {t['size']}" if t["size"] else ""
        nm = "  (not modified)" if t["not_modified"] else ""
        out.append(
            f"  run {t['run_id']:>5}  {t['checked_at']}  {t['verdict']:<18} {t['http_status'] or '-':>4}  "
            f"{t['elapsed_ms']:>6} ms{size}{nm}  {inert(t['reason'])}"
        )
    print("\n".join(out))
    return 0


def corpus_status(engine: Engine) -> dict[str, Any]:
    """Last run summary, current problems by verdict and kind, and the oldest unresolved breakage."""
    with engine.connect() as conn:
        last = conn.execute(select(RUN).order_by(RUN.c.id.desc()).limit(1)).mappings().first()
        live = select(OCC.c.url_id).where(OCC.c.url_id.is_not(None)).distinct().subquery()
        problems = dict(
            conn.execute(
                select(U.c.last_verdict, func.count())
                .join(live, live.c.url_id == U.c.id)
                .where(U.c.last_severity.in_([Severity.ERROR.value, Severity.WARNING.value]))
                .group_by(U.c.last_verdict)
            ).all()
        )
        oldest = conn.execute(
            select(U.c.url, U.c.failing_since, U.c.consecutive_failures, U.c.last_verdict)
            .join(live, live.c.url_id == U.c.id)
            .where(U.c.failing_since.is_not(None), U.c.last_severity == Severity.ERROR.value)
            .order_by(U.c.failing_since)
            .limit(5)
        ).all()
        findings = dict(conn.execute(select(FindingRow.kind, func.count()).group_by(FindingRow.kind)).all())
        errors = conn.execute(select(func.count()).select_from(CorpusErrorRow)).scalar_one()
        files = conn.execute(select(func.count()).select_from(A).where(A.c.deleted_at.is_(None))).scalar_one()
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


def print_status(engine: Engine, *, as_json: bool) -> None:
    data = corpus_status(engine)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    run = data["last_run"]
    lines = []
    if run is None:
        lines.append("no run yet: `monitor check` runs the first one")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items())) or "nothing checked"
        lines.append(
            f"last run {run['id']} ({run['trigger']}): {run['state']}, started {run['started_at']}, "
            f"finished {run['finished_at']}; {run['checked']}/{run['total_targets']} checked: {counts}"
        )
    lines.append(
        f"corpus: {data['files']} files, {data['urls']} distinct URLs, {data['corpus_errors']} bad files"
    )
    problems = ", ".join(f"{k} {v}" for k, v in data["problems"].items()) or "none"
    lines.append(f"current problems: {problems}")
    findings = ", ".join(f"{k} {v}" for k, v in sorted(data["findings"].items())) or "none"
    lines.append(f"findings in articles: {findings}")
    if data["oldest_unresolved"]:
        lines.append("oldest unresolved breakage:")
        for item in data["oldest_unresolved"]:
            since = f"since {item['failing_since']} ({item['runs']} runs)"
            lines.append(f"  {since} {item['verdict']}: {inert(item['url'])}")
    print("\n".join(lines))
