"""Re-check only the URLs whose current state is failing, so a recovery shows up within
the hour instead of the next night. Goes through the configured executor like every check
(in distributed mode the failing URLs are queued for the workers).
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from jobs.outcome import JobSkipped
from monitor.config import Settings
from monitor.distributed.executor import executor_for
from monitor.run.check import RunOutcome, RunRequest
from monitor.run.executors import QueuedRun
from monitor.store.plan import count_plan


def failing_count(engine: Engine) -> int:
    """Live URLs whose last verdict is a failure (run 0 never exists, so nothing is excluded)."""
    return count_plan(engine, run_id=0, only_failing=True)


async def recheck_failing(settings: Settings, engine: Engine, stop: asyncio.Event) -> RunOutcome | QueuedRun:
    """Run a check of the failing URLs (trigger ``recheck``); JobSkipped when nothing is failing."""
    if await asyncio.to_thread(failing_count, engine) == 0:
        raise JobSkipped("no URL is failing")
    request = RunRequest(trigger="recheck", only_failing=True)
    return await executor_for(settings).start(settings, engine, request, stop=stop)
