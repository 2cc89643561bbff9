"""Who checks a run: the one seam between the embedded default and distributed mode.

``LocalExecutor`` is today's in-process pipeline (SQLite or PostgreSQL, no broker).
``ProcrastinateExecutor`` plans the run into host shards and queues them for ``monitor
worker`` processes; it is chosen by ``[distributed] enabled = true`` and refuses any
database but PostgreSQL, so a misconfiguration fails at start with one clear line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.inventory import SyncReport
from monitor.pipeline import RunOutcome, run_check


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A distributed run that was planned and queued; workers check it from here."""

    run_id: int
    shards: int
    targets: int
    inventory: SyncReport | None = None


class LocalExecutor:
    """Check in this process (the embedded default)."""

    name = "local"

    async def start(
        self,
        settings: Settings,
        engine: Engine,
        *,
        paths: Sequence[str] | None = None,
        trigger: str = "cli",
        only_failing: bool = False,
        resume: bool = False,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> RunOutcome:
        return await run_check(
            settings,
            engine,
            paths=paths,
            trigger=trigger,
            only_failing=only_failing,
            resume=resume,
            stop=stop,
            on_progress=on_progress,
        )


class ProcrastinateExecutor:
    """Plan host shards and queue them; ``finish`` waits for the workers' fan-in when asked to."""

    name = "procrastinate"

    async def start(
        self,
        settings: Settings,
        engine: Engine,
        *,
        paths: Sequence[str] | None = None,
        trigger: str = "cli",
        only_failing: bool = False,
        wait_lock: float | None = None,
    ) -> QueuedRun:
        from monitor.distributed.runs import start_run

        run_id, shards, targets, inventory = await start_run(
            settings, engine, paths=paths, trigger=trigger, only_failing=only_failing, wait=wait_lock
        )
        return QueuedRun(run_id, shards, targets, inventory)

    async def finish(
        self,
        settings: Settings,
        engine: Engine,
        run_id: int,
        on_progress: Callable[[dict], None] | None = None,
    ) -> str:
        """Wait until the workers have finalized the run; returns its final state."""
        from monitor.distributed.runs import wait_run

        return await wait_run(engine, settings, run_id, on_progress)


def executor_for(settings: Settings) -> LocalExecutor | ProcrastinateExecutor:
    """The configured executor; ConfigError when distributed mode is on without PostgreSQL."""
    if not settings.distributed.enabled:
        return LocalExecutor()
    from monitor.distributed.queue import require_postgres

    require_postgres(settings)
    return ProcrastinateExecutor()
