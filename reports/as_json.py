"""The JSON report for machines: ``{"schema": "link-media-monitor/report", "version": 1, ...}``.

The document is described by ``reports/report.schema.json`` (JSON Schema 2020-12). Within
a version, fields are only ever added; a removal or change of meaning bumps ``version``.
Top-level keys of sections not asked for are absent. Timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from monitor.types import ArchiveSnapshot, Size
from reports import fmt
from reports.model import (
    ChangesSection,
    CorpusErrorsSection,
    FindingsSection,
    HostGroup,
    ImagesSection,
    OccurrenceItem,
    ReportData,
    Summary,
    TrendPoint,
    UrlItem,
    UrlList,
)

SCHEMA_ID = "link-media-monitor/report"
SCHEMA_VERSION = 1


def render_json(data: ReportData) -> str:
    return json.dumps(to_document(data), indent=2, ensure_ascii=False) + "\n"


def to_document(data: ReportData) -> dict[str, Any]:
    """The report as plain JSON-ready values."""
    run = data.run
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "generated_at": _iso(data.generated_at),
        "limit": data.limit,
        "sections": list(data.sections),
        "run": {
            "id": run.id,
            "state": run.state,
            "trigger": run.trigger,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "duration_seconds": run.duration_seconds,
            "total_targets": run.total_targets,
            "checked": run.checked,
            "error": run.error,
            "previous_run_id": run.previous_run_id,
        },
    }
    for name, section in SECTION_OBJECTS.items():  # the key order of version 1, not report order
        value = getattr(data, name)
        if value is not None:
            doc[name] = section(value)
    return doc


def _summary(s: Summary) -> dict[str, Any]:
    return {
        "checked": s.checked,
        "errors": s.errors,
        "warnings": s.warnings,
        "verdicts": dict(s.verdicts),
        "roles": [_count(c) for c in s.roles],
        "hosts": [_count(c) for c in s.hosts],
        "hosts_total": s.hosts_total,
        "articles": s.articles,
        "occurrences": s.occurrences,
        "urls": s.urls,
        "findings": s.findings,
        "corpus_errors": s.corpus_errors,
    }


def _images(images: ImagesSection) -> dict[str, Any]:
    return {key: _url_list(urls) for key, _title, urls in fmt.image_lists(images)}


def _changes(changes: ChangesSection) -> dict[str, Any]:
    return {"previous_run_id": changes.previous_run_id} | {
        key: _url_list(urls) for key, _title, urls in fmt.change_lists(changes)
    }


def _findings(f: FindingsSection) -> dict[str, Any]:
    return {
        "total": f.total,
        "omitted": f.omitted,
        "counts": dict(f.counts),
        "items": [
            {
                "kind": i.kind,
                "article": i.article,
                "title": i.title,
                "location": i.location,
                "message": i.message,
                "value": i.value,
                "expected": i.expected,
            }
            for i in f.items
        ],
    }


def _corpus_errors(e: CorpusErrorsSection) -> dict[str, Any]:
    return {
        "total": e.total,
        "omitted": e.omitted,
        "items": [
            {
                "path": i.path,
                "kind": i.kind,
                "message": i.message,
                "line": i.line,
                "column": i.column,
                "first_seen": _iso(i.first_seen),
                "last_seen": _iso(i.last_seen),
            }
            for i in e.items
        ],
    }


def _trend(trend: tuple[TrendPoint, ...]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": t.run_id,
            "started_at": _iso(t.started_at),
            "state": t.state,
            "checked": t.checked,
            "errors": t.errors,
            "warnings": t.warnings,
            "broken": t.broken,
            "image_problems": t.image_problems,
        }
        for t in trend
    ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _count(c: Any) -> dict[str, Any]:
    return {"name": c.name, "urls": c.urls, "errors": c.errors, "warnings": c.warnings}


def _size(d: Size | None) -> dict[str, int] | None:
    return None if d is None else {"width": d.width, "height": d.height}


def _url_list(urls: UrlList) -> dict[str, Any]:
    return {
        "total": urls.total,
        "omitted": urls.omitted,
        "urls": [url_object(item) for item in urls.urls],
        "by_host": [_host(g) for g in urls.by_host],
        "hosts_omitted": urls.hosts_omitted,
    }


def _host(g: HostGroup) -> dict[str, Any]:
    return {
        "host": g.host,
        "urls": g.urls,
        "errors": g.errors,
        "warnings": g.warnings,
        "articles": g.articles,
        "occurrences": g.occurrences,
        "verdicts": dict(g.verdicts),
    }


def url_object(item: UrlItem) -> dict[str, Any]:
    """One URL: verdict, the facts behind it, its failure history and where it is written."""
    image = None
    if item.image_format is not None or item.image_size is not None:
        size = item.image_size
        width, height = (None, None) if size is None else (size.width, size.height)
        image = {"format": item.image_format, "width": width, "height": height}
    doc = {
        "url": item.url,
        "host": item.host,
        "verdict": item.verdict,
        "severity": item.severity,
        "reason": item.reason,
        "checked_at": _iso(item.checked_at),
        "http_status": item.http_status,
        "final_url": item.final_url,
        "redirects": [{"url": r.url, "status": r.status, "location": r.location} for r in item.redirects],
        "attempts": item.attempts,
        "elapsed_ms": item.elapsed_ms,
        "content_type": item.content_type,
        "bytes_read": item.bytes_read,
        "image": image,
        "not_modified": item.not_modified,
        "failure": item.failure,
        "failing_since": _iso(item.failing_since),
        "consecutive_failures": item.consecutive_failures,
        "alert_state": item.alert_state,
        "previous_verdict": item.previous_verdict,
        "occurrences": [_occurrence(o) for o in item.occurrences],
        "occurrences_omitted": item.occurrences_omitted,
        "archived": _archived(item.archived),
    }
    if item.ack is not None:  # the acknowledged section only
        a = item.ack
        doc["acknowledged"] = {"reason": a.reason, "by": a.by, "at": _iso(a.at), "until": _iso(a.until)}
    return doc


def _archived(copy: ArchiveSnapshot | None) -> dict[str, Any] | None:
    """A dead page's archived copy: its URL, the archive's timestamp and that time in ISO 8601."""
    if copy is None:
        return None
    return {"url": copy.url, "timestamp": copy.timestamp, "captured_at": copy.captured_iso}


def _occurrence(o: OccurrenceItem) -> dict[str, Any]:
    check = None if o.size_check is None else {"verdict": o.size_check, "actual": _size(o.actual)}
    return {
        "article": o.article,
        "title": o.title,
        "location": o.location,
        "role": o.role,
        "declared": _size(o.declared),
        "size_check": check,
    }


# each registered section's JSON value (reports.sections), by the section's ReportData value
SECTION_OBJECTS: dict[str, Callable[[Any], Any]] = {
    "summary": _summary,
    "broken": _url_list,
    "moved": _url_list,
    "blocked": _url_list,
    "acknowledged": _url_list,
    "images": _images,
    "changes": _changes,
    "findings": _findings,
    "corpus_errors": _corpus_errors,
    "trend": _trend,
}
