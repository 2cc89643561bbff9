"""The CSV report: one row per problem occurrence, for spreadsheets and scripts.

Columns (stable; new ones are only ever appended):

========== ======================================================================
section     broken, images.size_mismatch, images.scaled, images.not_image,
            images.image_unreadable, moved, blocked, changes.newly_broken,
            changes.recovered, changes.still_broken, changes.flapping,
            changes.newly_mismatched, acknowledged,
            findings.<kind> (invalid_url, amp_cache_mismatch, wrong_type), corpus_errors
article     article path (corpus errors: the unreadable file)
location    frontmatter location, e.g. ``related[1].ampWebUrl`` (corpus errors: ``line:column``)
role        original, web, amp, cdn_amp, image, embed, body_link, body_image
url         the checked URL (findings: the value as written)
verdict     the run's verdict (size lists: the size check, size_mismatch or scaled;
            findings: the finding kind; corpus errors: the error kind)
severity    error, warning or ignore (empty for size checks, findings and corpus errors)
reason      why, in words (findings and corpus errors: the message; acknowledged: the
            verdict's reason, then the acknowledgement: its reason, who, when, until)
http_status final HTTP status
final_url   where redirects ended (findings: the expected value, e.g. the right AMP cache URL)
declared    declared image size ``WxH``
actual      measured image size ``WxH`` (from the size check, else from the image itself)
since       failing since (UTC, ISO 8601; corpus errors: first seen)
archived_url a broken or soft-404 page's archived copy (README "Archived copies"), when known
archived_at  when the archive captured that copy (UTC, ISO 8601)
========== ======================================================================

A URL no article carries any more gives one row with empty article/location/role.
Cells go through ``csv_cell`` so no spreadsheet evaluates them; lines end with ``\\n``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from monitor.textsafe import csv_cell
from reports import fmt
from reports.model import (
    ChangesSection,
    CorpusErrorsSection,
    FindingsSection,
    ImagesSection,
    ReportData,
    UrlItem,
    UrlList,
)

COLUMNS = (
    "section",
    "article",
    "location",
    "role",
    "url",
    "verdict",
    "severity",
    "reason",
    "http_status",
    "final_url",
    "declared",
    "actual",
    "since",
    "archived_url",
    "archived_at",
)
Row = tuple[object, ...]


def render_csv(data: ReportData) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([csv_cell(cell) for cell in row] for row in iter_rows(data))
    return out.getvalue()


def iter_rows(data: ReportData) -> Iterator[Row]:
    """Every problem occurrence of the report, in report order."""
    for name, rows in SECTION_ROWS.items():  # the row order the format has always had
        value = getattr(data, name)
        if value is not None:
            yield from rows(value)


def _no_rows(_value: object) -> Iterator[Row]:
    """Summary and trend count; they have no problem occurrences to list."""
    return iter(())


def _images(images: ImagesSection) -> Iterator[Row]:
    for key, _title, urls in fmt.image_lists(images):
        yield from _url_rows(f"images.{key}", urls)


def _changes(changes: ChangesSection) -> Iterator[Row]:
    for key, _title, urls in fmt.change_lists(changes):
        yield from _url_rows(f"changes.{key}", urls)


def _findings(findings: FindingsSection) -> Iterator[Row]:
    for f in findings.items:
        value, expected = f.value or "", f.expected or ""
        yield (
            f"findings.{f.kind}",
            f.article,
            f.location,
            "",
            value,
            f.kind,
            "",
            f.message,
            "",
            expected,
            "",
            "",
            "",
            "",
            "",
        )


def _corpus_errors(errors: CorpusErrorsSection) -> Iterator[Row]:
    for e in errors.items:
        where = f"{e.line}:{e.column}" if e.line is not None else ""
        yield (
            "corpus_errors",
            e.path,
            where,
            "",
            "",
            e.kind,
            "",
            e.message,
            None,
            "",
            "",
            "",
            _iso(e.first_seen),
            "",
            "",
        )


def _url_rows(section: str, urls: UrlList) -> Iterator[Row]:
    for item in urls.urls:
        head = (section,)
        reason = f"{item.reason}; acknowledged: {fmt.ack(item.ack)}" if item.ack else item.reason
        tail = (item.url, item.verdict, item.severity, reason, item.http_status, item.final_url or "")
        copy = item.archived
        since = (
            _iso(item.failing_since),
            copy.url if copy else "",
            (copy.captured_iso or "") if copy else "",
        )
        if not item.occurrences:
            yield (*head, "", "", "", *tail, "", _actual(item, None), *since)
        for occ in item.occurrences:
            actual = _actual(item, fmt.dims(occ.actual))
            row = tail
            if occ.size_check in fmt.SIZE_REASONS and section.startswith(("images.", "changes.newly_m")):
                row = (item.url, occ.size_check, "", fmt.SIZE_REASONS[occ.size_check], *tail[4:])
            yield (*head, occ.article, occ.location, occ.role, *row, fmt.dims(occ.declared), actual, *since)


def _actual(item: UrlItem, measured: str | None) -> str:
    return measured or fmt.dims(item.image_size)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


# each registered section's rows (reports.sections), by the section's ReportData value
SECTION_ROWS: dict[str, Callable[[Any], Iterator[Row]]] = {
    "summary": _no_rows,
    "broken": lambda urls: _url_rows("broken", urls),
    "images": _images,
    "moved": lambda urls: _url_rows("moved", urls),
    "blocked": lambda urls: _url_rows("blocked", urls),
    "changes": _changes,
    "acknowledged": lambda urls: _url_rows("acknowledged", urls),
    "findings": _findings,
    "corpus_errors": _corpus_errors,
    "trend": _no_rows,
}
