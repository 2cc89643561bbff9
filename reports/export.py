"""Export: every URL of one run, ok ones included, as JSON Lines or CSV, streamed.

One record per distinct URL with a result in the run: its verdict and facts, and every place
it occurs in the run's roots (article, exact field location, declared size, the run's size
check). The rows come from one query ordered by URL, read through a server-side cursor
(``yield_per``) and grouped as they arrive, so memory holds one URL's places however many
million URLs the run has.

JSON Lines: a header line ``{"schema": "link-media-monitor/export", "version": 1, "run": …}``,
then one URL record per line, as described by ``reports/export.schema.json`` (draft 2020-12).
Within a version fields are only ever added; a removal or change of meaning bumps ``version``.
CSV: one row per URL in ``CSV_COLUMNS``; the redirect chain and the places are JSON cells.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from itertools import groupby
from typing import IO, Any

from sqlalchemy import Engine, and_, select

from monitor.store.scope import run_roots, under_roots
from monitor.store.tables import ARCHIVE_COPIES, ARTICLES, OCCURRENCES, RESULTS, RUNS, SIZE_CHECKS, URLS
from monitor.textsafe import csv_cell
from monitor.types import ARCHIVE_VERDICTS, ArchiveSnapshot
from monitor.urls import redact_url
from reports.model import ReportError

SCHEMA_ID = "link-media-monitor/export"
SCHEMA_VERSION = 1
FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "url",
    "host",
    "kind",
    "verdict",
    "severity",
    "reason",
    "http_status",
    "final_url",
    "redirects",
    "attempts",
    "elapsed_ms",
    "bytes_read",
    "content_type",
    "image_format",
    "image_width",
    "image_height",
    "not_modified",
    "checked_at",
    "occurrence_count",
    "occurrences",
    "archived_url",
    "archived_at",
)
_YIELD_PER = 2000


def run_header(engine: Engine, run_id: int | None) -> dict[str, Any]:
    """The run exported (default: the latest), as the JSON Lines header's ``run`` object."""
    query = select(RUNS.c.id, RUNS.c.state, RUNS.c.trigger, RUNS.c.started_at, RUNS.c.finished_at)
    query = query.where(RUNS.c.id == run_id) if run_id is not None else query.order_by(RUNS.c.id.desc())
    with engine.connect() as conn:
        row = conn.execute(query.limit(1)).first()
        if row is None:
            raise ReportError(
                "no check run in the database yet" if run_id is None else f"no run with id {run_id}"
            )
        roots = run_roots(conn, row.id)
    return {
        "id": row.id,
        "state": row.state,
        "trigger": row.trigger,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "roots": list(roots) if roots is not None else None,
    }


def iter_records(engine: Engine, run_id: int) -> Iterator[dict[str, Any]]:
    """One record per URL of run ``run_id``, ordered by URL id, streamed from the database."""
    with engine.connect() as conn:
        roots = run_roots(conn, run_id)
        placed = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
        dead = and_(  # a dead page's archived copy, as the reports show it
            ARCHIVE_COPIES.c.url_id == RESULTS.c.url_id,
            RESULTS.c.verdict.in_([v.value for v in ARCHIVE_VERDICTS]),
            ARCHIVE_COPIES.c.snapshot_url.is_not(None),
        )
        joined = (
            RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id)
            .outerjoin(ARCHIVE_COPIES, dead)
            .outerjoin(
                placed, and_(OCCURRENCES.c.url_id == RESULTS.c.url_id, under_roots(ARTICLES.c.path, roots))
            )
            .outerjoin(
                SIZE_CHECKS,
                and_(SIZE_CHECKS.c.occurrence_id == OCCURRENCES.c.id, SIZE_CHECKS.c.run_id == run_id),
            )
        )
        query = (
            select(
                RESULTS.c.url_id,
                URLS.c.url,
                URLS.c.host,
                URLS.c.kind,
                RESULTS.c.verdict,
                RESULTS.c.severity,
                RESULTS.c.reason,
                RESULTS.c.http_status,
                RESULTS.c.final_url,
                RESULTS.c.redirects,
                RESULTS.c.attempts,
                RESULTS.c.elapsed_ms,
                RESULTS.c.bytes_read,
                RESULTS.c.content_type,
                RESULTS.c.image_format,
                RESULTS.c.image_width,
                RESULTS.c.image_height,
                RESULTS.c.not_modified,
                RESULTS.c.checked_at,
                ARCHIVE_COPIES.c.snapshot_url,
                ARCHIVE_COPIES.c.snapshot_at,
                OCCURRENCES.c.id.label("occurrence_id"),
                ARTICLES.c.path,
                OCCURRENCES.c.location,
                OCCURRENCES.c.role,
                OCCURRENCES.c.related,
                OCCURRENCES.c.declared_width,
                OCCURRENCES.c.declared_height,
                SIZE_CHECKS.c.verdict.label("size_check"),
                SIZE_CHECKS.c.actual_width,
                SIZE_CHECKS.c.actual_height,
            )
            .select_from(joined)
            .where(RESULTS.c.run_id == run_id)
            .order_by(RESULTS.c.url_id, OCCURRENCES.c.id)
        )
        rows = conn.execution_options(stream_results=True, yield_per=_YIELD_PER).execute(query)
        for _url_id, group in groupby(rows, key=lambda r: r.url_id):
            first, *rest = group
            yield _record(first, [r for r in (first, *rest) if r.occurrence_id is not None])


def _record(row: Any, places: list[Any]) -> dict[str, Any]:
    return {
        "url": redact_url(row.url),  # the inventory keeps userinfo to fetch with; an export never shows it
        "host": row.host,
        "kind": row.kind,
        "verdict": row.verdict,
        "severity": row.severity,
        "reason": row.reason,
        "http_status": row.http_status,
        "final_url": redact_url(row.final_url) if row.final_url else None,
        "redirects": _redirects(row.redirects),
        "attempts": row.attempts,
        "elapsed_ms": row.elapsed_ms,
        "bytes_read": row.bytes_read,
        "content_type": row.content_type,
        "image": None
        if row.image_format is None and row.image_width is None
        else {"format": row.image_format, "size": _size(row.image_width, row.image_height)},
        "not_modified": bool(row.not_modified),
        "checked_at": _iso(row.checked_at),
        "archived": _archived(row.snapshot_url, row.snapshot_at),
        "occurrences": [
            {
                "article": p.path,
                "location": p.location,
                "role": p.role,
                "related": bool(p.related),
                "declared": _size(p.declared_width, p.declared_height),
                "size_check": None
                if p.size_check is None
                else {"verdict": p.size_check, "actual": _size(p.actual_width, p.actual_height)},
            }
            for p in places
        ],
    }


def write_jsonl(out: IO[str], engine: Engine, run_id: int | None) -> int:
    """Write the header and the records of the run; returns how many URL records."""
    header = run_header(engine, run_id)
    out.write(json.dumps({"schema": SCHEMA_ID, "version": SCHEMA_VERSION, "run": header}) + "\n")
    n = 0
    for record in iter_records(engine, header["id"]):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(out: IO[str], engine: Engine, run_id: int | None) -> int:
    """Write ``CSV_COLUMNS`` and one row per URL of the run; returns how many rows."""
    header = run_header(engine, run_id)
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for r in iter_records(engine, header["id"]):
        n += 1
        image, size = r["image"] or {}, (r["image"] or {}).get("size") or {}
        flat = {
            **r,
            "redirects": json.dumps(r["redirects"]) if r["redirects"] else "",
            "image_format": image.get("format"),
            "image_width": size.get("width"),
            "image_height": size.get("height"),
            "occurrence_count": len(r["occurrences"]),
            "occurrences": json.dumps(r["occurrences"], ensure_ascii=False),
            "archived_url": (r["archived"] or {}).get("url"),
            "archived_at": (r["archived"] or {}).get("captured_at"),
        }
        writer.writerow([csv_cell(flat[c]) for c in CSV_COLUMNS])
    return n


def _redirects(raw: str | None) -> list[dict[str, Any]]:
    """The stored hop list (``[url, status, location]``) leniently: a malformed value exports as none."""
    try:
        hops = json.loads(raw) if raw else []
    except ValueError:
        return []
    out = []
    for hop in hops if isinstance(hops, list) else []:
        if isinstance(hop, list) and hop and isinstance(hop[0], str):
            status = hop[1] if len(hop) > 1 and isinstance(hop[1], int) else None
            location = hop[2] if len(hop) > 2 and isinstance(hop[2], str) else None
            shown = redact_url(location) if location else None
            out.append({"url": redact_url(hop[0]), "status": status, "location": shown})
    return out


def _archived(url: str | None, timestamp: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    copy = ArchiveSnapshot(url, timestamp or "")
    return {"url": copy.url, "timestamp": copy.timestamp, "captured_at": copy.captured_iso}


def _size(width: int | None, height: int | None) -> dict[str, int] | None:
    return None if width is None or height is None else {"width": width, "height": height}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
