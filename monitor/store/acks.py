"""Acknowledged URLs (``monitor ack``/``unack``): a known, accepted breakage an editor silenced.

An acknowledged URL is still checked and its history kept, but while the acknowledgement is
active a failing verdict counts as severity ``ignore`` (no exit code 2, not in the problem
lists) and raises no alert events. It ends by itself: at ``until``, or when the URL is seen
good again (the batch that sees it deletes the row, so the next breakage is news again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, or_, select

from monitor.store.tables import ACKS, URLS
from monitor.urls import InvalidUrl, normalise_url


@dataclass(frozen=True, slots=True)
class AckChange:
    """What ``ack``/``unack`` did to one URL as given: ``done`` False with ``error`` when it could not."""

    url: str
    done: bool
    error: str | None = None


def _url_ids(conn: Connection, raw_urls: Sequence[str]) -> list[tuple[str, int | None, str | None]]:
    """(URL as normalised, its id or None, error) per given URL."""
    out: list[tuple[str, int | None, str | None]] = []
    for raw in raw_urls:
        url = normalise_url(raw)
        if isinstance(url, InvalidUrl):
            out.append((raw, None, f"not a checkable URL: {url.reason}"))
            continue
        uid = conn.execute(select(URLS.c.id).where(URLS.c.url == url)).scalar()
        out.append((url, uid, None if uid is not None else "unknown URL (not in the inventory)"))
    return out


def acknowledge(
    engine: Engine, raw_urls: Sequence[str], *, reason: str, by: str, until: datetime | None, now: datetime
) -> list[AckChange]:
    """Acknowledge each known URL (replacing an earlier acknowledgement); unknown ones are errors."""
    changes: list[AckChange] = []
    with engine.begin() as conn:
        for url, uid, error in _url_ids(conn, raw_urls):
            if uid is None:
                changes.append(AckChange(url, False, error))
                continue
            conn.execute(delete(ACKS).where(ACKS.c.url_id == uid))
            conn.execute(insert(ACKS).values(url_id=uid, reason=reason, by=by, at=now, until=until))
            changes.append(AckChange(url, True))
    return changes


def unacknowledge(engine: Engine, raw_urls: Sequence[str]) -> list[AckChange]:
    """Remove each URL's acknowledgement; a URL that had none is reported as not done."""
    changes: list[AckChange] = []
    with engine.begin() as conn:
        for url, uid, error in _url_ids(conn, raw_urls):
            if uid is None:
                changes.append(AckChange(url, False, error))
                continue
            gone = conn.execute(delete(ACKS).where(ACKS.c.url_id == uid)).rowcount
            changes.append(AckChange(url, bool(gone), None if gone else "was not acknowledged"))
    return changes


def active_for(conn: Connection, url_ids: Sequence[int], now: datetime) -> set[int]:
    """The given URLs acknowledged at ``now`` (expired acknowledgements do not count)."""
    if not url_ids:
        return set()
    query = select(ACKS.c.url_id).where(
        ACKS.c.url_id.in_(list(url_ids)), or_(ACKS.c.until.is_(None), ACKS.c.until > now)
    )
    return set(conn.execute(query).scalars())


def clear(conn: Connection, url_ids: Sequence[int]) -> None:
    """End the acknowledgements of URLs seen good again (recovery ends an acknowledgement)."""
    if url_ids:
        conn.execute(delete(ACKS).where(ACKS.c.url_id.in_(list(url_ids))))
