"""Soft-404 baselines (``types.SoftBaseline``): the made-up URL probes of past runs, per host and prefix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from monitor.store.tables import SOFT_BASELINES
from monitor.types import SoftBaseline

__all__ = ["load_baselines", "save_baselines"]

_CHUNK = 400


def load_baselines(engine: Engine, since: datetime) -> list[tuple[SoftBaseline, datetime]]:
    """The baselines probed at ``since`` or later, each with when it was probed."""
    t = SOFT_BASELINES
    query = select(
        t.c.host, t.c.prefix, t.c.url, t.c.status, t.c.soft, t.c.title, t.c.fingerprint, t.c.probed_at
    )
    with engine.connect() as conn:
        rows = conn.execute(query.where(t.c.probed_at >= since)).all()
    return [(SoftBaseline(*row[:-1]), row[-1]) for row in rows]


def save_baselines(engine: Engine, baselines: Sequence[SoftBaseline], now: datetime) -> None:
    """Store fresh probes, replacing what was kept for the same host and prefix.

    Two processes that probed the same host and prefix (the slices of one giant host) may race
    here: the loser's probes are dropped, the winner's say the same.
    """
    try:
        _save(engine, baselines, now)
    except IntegrityError:
        return


def _save(engine: Engine, baselines: Sequence[SoftBaseline], now: datetime) -> None:
    t = SOFT_BASELINES
    with engine.begin() as conn:
        for start in range(0, len(baselines), _CHUNK):
            chunk = baselines[start : start + _CHUNK]
            same = or_(*(and_(t.c.host == b.host, t.c.prefix == b.prefix) for b in chunk))
            conn.execute(delete(t).where(same))
            conn.execute(
                insert(t),
                [
                    {
                        "host": b.host[:300],
                        "prefix": b.prefix[:300],
                        "probed_at": now,
                        "url": b.url,
                        "status": b.status,
                        "soft": b.soft,
                        "title": b.title,
                        "fingerprint": b.fingerprint,
                    }
                    for b in chunk
                ],
            )
