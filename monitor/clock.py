"""The one clock of the product: aware UTC, because every timestamp column is UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC now (SQLModel UTCDateTime columns refuse naive datetimes)."""
    return datetime.now(UTC)
