"""Who checks a run: one ``Executor`` protocol for the embedded default and distributed mode.

The CLI, the nightly job and the recheck job all start runs through an executor, so
``[distributed] enabled`` changes where URLs are checked and nothing else. The local
executor checks in this process under the corpus-check lease and returns the finished
``RunOutcome``; the distributed one (``monitor.distributed.executor``) plans and queues
the run and returns a ``QueuedRun`` that ``finish`` follows to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.run.check import RunOutcome, RunRequest, run_check
from monitor.run.inventory import SyncReport
from monitor.store import runs as store
from monitor.store.db import open_engine
from monitor.store.lease import hold_corpus_check


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A distributed run that was planned and queued; workers check it from here."""

    run_id: int
    shards: int
    targets: int
    inventory: SyncReport | None = None


class Executor(Protocol):
    """Starts a run and, where it runs elsewhere, waits for it to end."""

    name: str

    def open_engine(self, settings: Settings) -> Engine:
        """The engine this executor's runs are written through."""
        ...

    async def start(
        self,
        settings: Settings,
        engine: Engine,
        request: RunRequest,
        *,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_locked: Callable[[], None] | None = None,
    ) -> RunOutcome | QueuedRun:
        """Check (local) or queue (distributed) the run; raises LeaseBusy when another check runs."""
        ...

    async def finish(
        self,
        settings: Settings,
        engine: Engine,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Wait until run ``run_id`` has ended; returns its final state."""
        ...


class LocalExecutor:
    """Check in this process (the embedded default), holding the corpus-check lease."""

    name = "local"

    def open_engine(self, settings: Settings) -> Engine:
        return open_engine(settings.database_url)

    async def start(
        self,
        settings: Settings,
        engine: Engine,
        request: RunRequest,
        *,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_locked: Callable[[], None] | None = None,
    ) -> RunOutcome:
        stop = stop or asyncio.Event()
        ttl = settings.jobs.lock_ttl_seconds
        # a lost lease (we stalled past its TTL and someone took over) stops the run like a signal
        async with hold_corpus_check(engine, ttl, wait=request.wait_lock or False, lost=stop):
            if on_locked is not None:
                on_locked()
            return await run_check(settings, engine, request, stop=stop, on_progress=on_progress)

    async def finish(
        self,
        settings: Settings,
        engine: Engine,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """A local run has ended when ``start`` returns: its state is read back."""
        return await asyncio.to_thread(store.run_state, engine, run_id)
