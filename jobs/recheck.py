"""Re-check only the URLs whose current state is failing, so a recovery shows up within
the hour instead of the next night. Holds the same corpus-check lease as every check.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from jobs.runner import JobSkipped
from monitor.config import Settings
from monitor.pipeline import RunOutcome, run_check
from monitor.store.lease import hold_corpus_check
from monitor.store.results import count_plan


def failing_count(engine: Engine) -> int:
    """Live URLs whose last verdict is a failure (run 0 never exists, so nothing is excluded)."""
    return count_plan(engine, run_id=0, only_failing=True)


async def recheck_failing(settings: Settings, engine: Engine, stop: asyncio.Event) -> RunOutcome:
    """Run a check of the failing URLs (trigger ``recheck``); JobSkipped when nothing is failing."""
    if await asyncio.to_thread(failing_count, engine) == 0:
        raise JobSkipped("no URL is failing")
    async with hold_corpus_check(engine, settings.jobs.lock_ttl_seconds, lost=stop):
        return await run_check(settings, engine, trigger="recheck", only_failing=True, stop=stop)
