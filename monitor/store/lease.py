"""Named database leases: a lock that expires when its holder stops renewing it.

A crashed holder never blocks later runs for longer than the TTL, and a holder on
this host whose process is gone is taken over at once. Taking a lease is one
conditional statement (an INSERT that ignores conflicts, then an UPDATE guarded by
expiry), so of any number of racing processes exactly one wins, on SQLite (writes
serialise) and on PostgreSQL (the UPDATE re-checks its WHERE on the latest row
version). Expiry uses the callers' clocks: hosts sharing a database need NTP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Engine, and_, delete, select, update

from monitor.store import runs
from monitor.store.db import dialect_insert
from monitor.store.tables import LEASES

CORPUS_CHECK = "corpus-check"  # held by every check run: CLI, nightly job, recheck job
POLL_S = 0.5  # how often a waiting caller retries

log = structlog.get_logger("monitor.lease")


class LeaseBusy(Exception):
    """Someone else holds the lease; says who and until when."""

    def __init__(self, name: str, holder: str, expires_at: datetime | None) -> None:
        self.name, self.holder, self.expires_at = name, holder, expires_at
        self.until = _fmt(expires_at) if expires_at else "unknown"
        super().__init__(f"lease {name!r} is busy (holder {holder}, lease expires at {self.until})")


def _fmt(at: datetime) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _now() -> datetime:
    return datetime.now(UTC)


def acquire(engine: Engine, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> bool:
    """Take ``name`` for ``holder`` if it is free, expired, or held by a dead process on this host.

    Not re-entrant: a holder that already has the lease gets False, so two jobs of one
    process never share it.
    """
    at = now or _now()
    values = {"holder": holder, "acquired_at": at, "expires_at": at + timedelta(seconds=ttl_s)}
    with engine.begin() as conn:
        ins = dialect_insert(conn, LEASES)
        inserted = ins.values(name=name, **values).on_conflict_do_nothing().returning(LEASES.c.name)
        if conn.execute(inserted).first() is not None:  # rowcount is not reliable for INSERTs
            return True
        taken = conn.execute(
            update(LEASES).where(LEASES.c.name == name, LEASES.c.expires_at < at).values(**values)
        )
        if taken.rowcount == 1:
            return True
        current = conn.execute(select(LEASES.c.holder).where(LEASES.c.name == name)).scalar_one_or_none()
        if current is None or not _dead_here(current):
            return False
        log.warning("lease.taken_over", lease=name, holder=current, reason="holder process is gone")
        stolen = conn.execute(
            update(LEASES).where(and_(LEASES.c.name == name, LEASES.c.holder == current)).values(**values)
        )
        return stolen.rowcount == 1


def _dead_here(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not runs.pid_alive(int(pid))


def renew(engine: Engine, name: str, holder: str, ttl_s: float, *, now: datetime | None = None) -> bool:
    """Push the expiry out by ``ttl_s``; False when ``holder`` no longer has the lease."""
    at = now or _now()
    with engine.begin() as conn:
        res = conn.execute(
            update(LEASES)
            .where(LEASES.c.name == name, LEASES.c.holder == holder)
            .values(expires_at=at + timedelta(seconds=ttl_s))
        )
        return res.rowcount == 1


def release(engine: Engine, name: str, holder: str) -> None:
    """Drop the lease if ``holder`` still has it (a taken-over lease stays with its new holder)."""
    with engine.begin() as conn:
        conn.execute(delete(LEASES).where(LEASES.c.name == name, LEASES.c.holder == holder))


def current(engine: Engine, name: str) -> tuple[str, datetime] | None:
    """(holder, expires_at) of ``name``, or None when nobody has ever held it or it was released."""
    with engine.connect() as conn:
        row = conn.execute(select(LEASES.c.holder, LEASES.c.expires_at).where(LEASES.c.name == name)).first()
    return (row[0], row[1]) if row else None


@dataclass(slots=True)
class Lease:
    """A held lease; ``lost`` is set when a renewal finds it taken over (stop the work)."""

    name: str
    holder: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def hold(
    engine: Engine,
    name: str,
    ttl_s: float,
    *,
    wait: bool | float = False,
    holder: str | None = None,
    lost: asyncio.Event | None = None,
) -> AsyncIterator[Lease]:
    """Hold ``name`` for the body, renewing every ``ttl_s / 3`` seconds.

    ``wait=False`` raises ``LeaseBusy`` at once when busy; ``True`` waits as long as it
    takes; a number waits up to that many seconds, then raises ``LeaseBusy``. ``lost``
    (e.g. a run's stop event) is set if a renewal finds the lease taken over.
    """
    who = holder or runs.holder_id()
    deadline = None if wait is True else asyncio.get_running_loop().time() + float(wait or 0)
    while not await asyncio.to_thread(acquire, engine, name, who, ttl_s):
        left = POLL_S if deadline is None else deadline - asyncio.get_running_loop().time()
        if left <= 0:
            seen = await asyncio.to_thread(current, engine, name)
            raise LeaseBusy(name, *(seen or ("unknown", None)))
        await asyncio.sleep(min(POLL_S, left))
    lease = Lease(name, who, lost or asyncio.Event())
    renewer = asyncio.create_task(_renew_loop(engine, lease, ttl_s))
    try:
        yield lease
    finally:
        renewer.cancel()  # a renewal already in its thread finds the row gone or someone else's: no effect
        try:
            release(engine, name, who)  # synchronous: runs even when the body was cancelled
        except Exception as exc:  # e.g. a locked or full database; must not mask the body's own error
            log.warning("lease.release_failed", lease=name, error=f"{type(exc).__name__}: {exc}")


async def _renew_loop(engine: Engine, lease: Lease, ttl_s: float) -> None:
    while True:
        await asyncio.sleep(ttl_s / 3)
        try:
            kept = await asyncio.to_thread(renew, engine, lease.name, lease.holder, ttl_s)
        except Exception as exc:  # a database hiccup: try again next period, before the TTL runs out
            log.warning("lease.renew_failed", lease=lease.name, error=f"{type(exc).__name__}: {exc}")
            continue
        if not kept:
            log.error("lease.lost", lease=lease.name, holder=lease.holder)
            lease.lost.set()
            return


@asynccontextmanager
async def hold_corpus_check(
    engine: Engine, ttl_s: float, *, wait: bool | float = False, lost: asyncio.Event | None = None
) -> AsyncIterator[Lease]:
    """The corpus-check lease; on taking it, runs still marked running are orphans: mark them interrupted.

    Every check holds this lease, so once we have it no other check can be alive.
    """
    async with hold(engine, CORPUS_CHECK, ttl_s, wait=wait, lost=lost) as lease:
        stale = await asyncio.to_thread(
            runs.interrupt_stale_runs, engine, now=_now(), stale_after=timedelta(0)
        )
        for run_id in stale:
            log.warning("run.interrupted", run_id=run_id, reason="found unfinished when taking the lock")
        yield lease
