"""Archived copies for a run's dead pages, looked up after the verdicts are stored and before the
reports are written (local runs: ``check.run_check``; distributed runs: the finalizer).

Each broken or soft-404 page of the run without a fresh cached answer (``store.archive``) is
looked up (``fetch.archive``), at most ``archive.max_per_run`` a run (never asked first, then the
oldest answers; the rest wait for the next run), and the answers are cached. A URL carrying
credentials or a secret-looking parameter is never sent to the archive. Nothing here fails a
run: a lookup that fails is logged (``archive.lookup_failed``), an archive that keeps failing
or asks to wait too long is left alone for the run (``archive.unavailable``), and the run goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Engine

from monitor.clock import utcnow
from monitor.config import Settings
from monitor.fetch.archive import ArchiveAnswer, ArchiveClient
from monitor.store import archive as cache
from monitor.store import lease, runs
from monitor.types import ArchiveSnapshot
from monitor.urls import redact_url

log = structlog.get_logger("monitor.archive")

BEAT_SECONDS = 30.0  # a local run's heartbeat while it waits for the archive


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    """What one run's lookups did (the ``archive.finished`` event)."""

    looked_up: int  # pages tried
    found: int
    none: int  # answered "no copy"
    failed: int  # no answer (asked again next run)
    left: int  # due pages without an answer after this run: failed, over max_per_run, or not reached
    gave_up: str | None = None


async def suggest_archived(
    settings: Settings, engine: Engine, run_id: int, *, stop: asyncio.Event | None = None, beat: bool = False
) -> ArchiveSummary | None:
    """Look up and cache archived copies of run ``run_id``'s dead pages; None when switched off or
    when it could not even start (logged). ``beat``: keep the (still running) run's heartbeat fresh."""
    archive = settings.archive
    if not archive.enabled or archive.max_per_run == 0:
        return None
    try:
        return await _suggest(settings, engine, run_id, stop or asyncio.Event(), beat)
    except Exception as exc:  # e.g. the database went away: the run itself is done and stays so
        error = f"{type(exc).__name__}: {exc}"
        log.warning("archive.unavailable", run_id=run_id, endpoint=archive.endpoint, error=error, skipped=0)
        return None


def archive_lease(run_id: int) -> str:
    """The lease a distributed run's finalizer holds while it looks up (its close deletes it)."""
    return f"archive-lookups:{run_id}"


def suggest_archived_blocking(settings: Settings, engine: Engine, run_id: int) -> bool:
    """``suggest_archived`` for the distributed finalizer (synchronous, in a worker thread), under the
    run's ``archive_lease``: every worker's reaper finalizes a run whose shards are all done, and the
    archive must not be asked once per worker. False when another finalizer holds the lease (it looks
    up, then closes the run); True when done, the lease still held for ``distributed.stall_seconds``
    so the caller closes the run before anyone else starts over (a finalizer that died is replaced
    when the lease expires)."""
    if not settings.archive.enabled:
        return True
    name, holder, ttl = archive_lease(run_id), runs.holder_id(), settings.distributed.stall_seconds
    if not lease.acquire(engine, name, holder, ttl):
        return False

    async def held() -> None:
        renewer = asyncio.create_task(_renew(engine, name, holder, ttl))
        try:
            await suggest_archived(settings, engine, run_id)
        finally:
            renewer.cancel()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(held())
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, held()).result()
    return lease.renew(engine, name, holder, ttl)


async def _renew(engine: Engine, name: str, holder: str, ttl: float) -> None:
    """Keep ``name`` while the lookups go on (a renewal that fails is tried again next period)."""
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await asyncio.to_thread(lease.renew, engine, name, holder, ttl)
        except Exception as exc:
            log.warning("lease.renew_failed", lease=name, error=f"{type(exc).__name__}: {exc}")


async def _suggest(
    settings: Settings, engine: Engine, run_id: int, stop: asyncio.Event, beat: bool
) -> ArchiveSummary:
    archive = settings.archive
    rlog = log.bind(run_id=run_id)  # the finalizer's thread has no run bound
    started = time.perf_counter()
    now = utcnow()

    def read_due() -> list[tuple[int, str]]:
        with engine.connect() as conn:
            return cache.due(conn, run_id, archive.endpoint, now - timedelta(hours=archive.ttl_hours))

    def write(found: list[tuple[int, ArchiveSnapshot | None]]) -> None:
        with engine.begin() as conn:
            cache.save(conn, found, endpoint=archive.endpoint, now=utcnow())

    due = await asyncio.to_thread(read_due)  # the database is never waited on inside the event loop
    # a URL with credentials or a token in it is the corpus's secret, not the archive's business
    todo = [(uid, url) for uid, url in due if redact_url(url) == url][: archive.max_per_run]
    answers: dict[int, ArchiveAnswer] = {}
    gave_up = None
    if todo:
        heartbeat = _beater(engine, run_id) if beat else None
        async with ArchiveClient(archive, settings.http, settings.safety) as client:
            pending = list(reversed(todo))
            workers = [
                asyncio.create_task(_work(client, pending, answers, stop, heartbeat, rlog))
                for _ in range(min(archive.concurrency, len(todo)))
            ]
            await asyncio.gather(*workers)
            gave_up = client.gave_up
        await asyncio.to_thread(write, _cacheable(answers))
    found = sum(1 for a in answers.values() if a.snapshot is not None)
    failed = sum(1 for a in answers.values() if a.error is not None)
    none = len(answers) - found - failed
    summary = ArchiveSummary(
        looked_up=len(answers),
        found=found,
        none=none,
        failed=failed,
        left=len(due) - found - none,
        gave_up=gave_up,
    )
    if gave_up is not None:
        skipped = len(todo) - len(answers)
        rlog.warning("archive.unavailable", endpoint=archive.endpoint, error=gave_up, skipped=skipped)
    rlog.info(
        "archive.finished",
        endpoint=archive.endpoint,
        looked_up=summary.looked_up,
        found=summary.found,
        none=summary.none,
        failed=summary.failed,
        left=summary.left,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return summary


async def _work(
    client: ArchiveClient,
    pending: list[tuple[int, str]],
    answers: dict[int, ArchiveAnswer],
    stop: asyncio.Event,
    heartbeat: Callable[[], None] | None,
    rlog: Any,
) -> None:
    """Take the next page until none is left, the run is stopped or the archive is left alone."""
    while pending and not stop.is_set() and client.gave_up is None:
        uid, url = pending.pop()
        answer = await client.lookup(url)
        answers[uid] = answer
        if answer.error is not None and answer.error != client.gave_up:
            rlog.warning("archive.lookup_failed", url=url, error=answer.error)
        if heartbeat is not None:
            heartbeat()


def _beater(engine: Engine, run_id: int) -> Callable[[], None]:
    """A call that refreshes the run's heartbeat at most every ``BEAT_SECONDS``."""
    last = time.monotonic()

    def beat() -> None:
        nonlocal last
        if time.monotonic() - last >= BEAT_SECONDS:
            last = time.monotonic()
            runs.heartbeat(engine, run_id, utcnow())

    return beat


def _cacheable(answers: dict[int, ArchiveAnswer]) -> list[tuple[int, ArchiveSnapshot | None]]:
    """Answers only: a copy, or none found; a failed lookup is asked again next run."""
    return [(uid, a.snapshot) for uid, a in sorted(answers.items()) if a.error is None]
