"""The distributed executor: a run planned into host shards and queued for ``monitor worker``s.

Chosen by ``[distributed] enabled = true``; ``executor_for`` refuses any database but
PostgreSQL, so a misconfiguration fails at start with one clear line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.distributed.queue import open_engine_serialized, require_postgres
from monitor.distributed.runs import start_run, wait_run
from monitor.run.check import RunRequest
from monitor.run.executors import Executor, LocalExecutor, QueuedRun


class ProcrastinateExecutor:
    """Plan host shards and queue them; ``finish`` waits for the workers' fan-in."""

    name = "procrastinate"

    def open_engine(self, settings: Settings) -> Engine:
        return open_engine_serialized(settings)

    async def start(
        self,
        settings: Settings,
        engine: Engine,
        request: RunRequest,
        *,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_locked: Callable[[], None] | None = None,
    ) -> QueuedRun:
        """Queue the run; ``stop`` and ``on_progress`` belong to the workers, not to this process."""
        if request.resume:
            raise ValueError("--resume is for local runs; a distributed run resumes by itself")
        run_id, shards, targets, inventory = await start_run(
            settings,
            engine,
            paths=request.paths,
            trigger=request.trigger,
            only_failing=request.only_failing,
            wait=request.wait_lock,
        )
        return QueuedRun(run_id, shards, targets, inventory)

    async def finish(
        self,
        settings: Settings,
        engine: Engine,
        run_id: int,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Wait until the workers have finalized the run; returns its final state."""
        return await wait_run(engine, settings, run_id, on_progress)


def executor_for(settings: Settings) -> Executor:
    """The configured executor; ConfigError when distributed mode is on without PostgreSQL."""
    if not settings.distributed.enabled:
        return LocalExecutor()
    require_postgres(settings)
    return ProcrastinateExecutor()
