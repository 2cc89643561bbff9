"""The archived-copy cache (``archive_copy``): which broken pages of a run to ask the archive about,
and what it answered.

A found copy and a "none found" are both answers and both kept for the TTL, so a nightly run
asks about each dead page about once a TTL, not once a night. A failed lookup is no answer:
nothing is written and the next run asks again. An answer is only reused for the endpoint
that gave it (a switch to a self-hosted archive asks that one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, case, or_, select

from monitor.store.db import dialect_insert
from monitor.store.tables import ARCHIVE_COPIES, RESULTS, URLS
from monitor.types import ARCHIVE_VERDICTS, ArchiveSnapshot, TargetKind

_CHUNK = 500


def due(conn: Connection, run_id: int, endpoint: str, fresh_after: datetime) -> list[tuple[int, str]]:
    """(url id, URL) of the run's broken and soft-404 pages with no answer from ``endpoint`` newer
    than ``fresh_after``: never asked first, then the oldest answers."""
    joined = RESULTS.join(URLS, URLS.c.id == RESULTS.c.url_id).outerjoin(
        ARCHIVE_COPIES, ARCHIVE_COPIES.c.url_id == URLS.c.id
    )
    query = (
        select(URLS.c.id, URLS.c.url)
        .select_from(joined)
        .where(
            RESULTS.c.run_id == run_id,
            RESULTS.c.verdict.in_([v.value for v in ARCHIVE_VERDICTS]),
            URLS.c.kind == TargetKind.PAGE.value,
            or_(
                ARCHIVE_COPIES.c.url_id.is_(None),
                ARCHIVE_COPIES.c.endpoint != endpoint,
                ARCHIVE_COPIES.c.looked_up_at < fresh_after,
            ),
        )
        .order_by(
            case((ARCHIVE_COPIES.c.url_id.is_(None), 0), else_=1), ARCHIVE_COPIES.c.looked_up_at, URLS.c.id
        )
    )
    return [(row.id, row.url) for row in conn.execute(query)]


def save(
    conn: Connection,
    answers: Sequence[tuple[int, ArchiveSnapshot | None]],
    *,
    endpoint: str,
    now: datetime,
) -> None:
    """Record each URL's answer (a copy, or None for "none found"), replacing an older one; an
    upsert, so two finalizers of one distributed run racing each other both succeed."""
    for start in range(0, len(answers), _CHUNK):
        chunk = answers[start : start + _CHUNK]
        upsert = dialect_insert(conn, ARCHIVE_COPIES)
        fields = ("endpoint", "looked_up_at", "snapshot_url", "snapshot_at")
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[ARCHIVE_COPIES.c.url_id], set_={f: upsert.excluded[f] for f in fields}
            ),
            [
                {
                    "url_id": uid,
                    "endpoint": endpoint,
                    "looked_up_at": now,
                    "snapshot_url": snap.url if snap else None,
                    "snapshot_at": snap.timestamp if snap else None,
                }
                for uid, snap in chunk
            ],
        )


def copies(conn: Connection, url_ids: Iterable[int]) -> dict[int, ArchiveSnapshot]:
    """The cached copies found for ``url_ids`` (URLs with none, or never asked about, are absent)."""
    ids = list(url_ids)
    found: dict[int, ArchiveSnapshot] = {}
    for start in range(0, len(ids), _CHUNK):
        query = select(ARCHIVE_COPIES).where(
            ARCHIVE_COPIES.c.url_id.in_(ids[start : start + _CHUNK]),
            ARCHIVE_COPIES.c.snapshot_url.is_not(None),
        )
        for row in conn.execute(query):
            found[row.url_id] = ArchiveSnapshot(row.snapshot_url, row.snapshot_at or "")
    return found
