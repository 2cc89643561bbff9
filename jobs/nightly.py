"""The nightly check: the whole corpus through the configured executor, then report files.

Locally the run is checked here under the corpus-check lease and its report files are
written when it finished (``reports.files``); an interrupted run writes none, so
``latest.*`` keeps showing the last complete run. In distributed mode the run is planned
and queued here; the workers check it and the last one to finish writes the reports.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.distributed.executor import executor_for
from monitor.run.check import RunOutcome, RunRequest
from monitor.run.executors import QueuedRun
from reports.files import write_pending_reports, write_run_reports

log = structlog.get_logger("monitor.jobs")


async def nightly_check(settings: Settings, engine: Engine, stop: asyncio.Event) -> RunOutcome | QueuedRun:
    """Check the corpus (trigger ``schedule``) and write report files; raises LeaseBusy when a check runs."""
    executor = executor_for(settings)
    if not settings.distributed.enabled:  # distributed planners drain pending reports themselves
        await asyncio.to_thread(write_pending_reports, engine, settings.reports)
    result = await executor.start(settings, engine, RunRequest(trigger="schedule"), stop=stop)
    if isinstance(result, QueuedRun):
        log.info("run.queued", run_id=result.run_id, shards=result.shards, targets=result.targets)
        return result
    if result.state == "finished":
        await asyncio.to_thread(write_run_reports, engine, settings.reports, result.run_id)
    else:
        log.warning("reports.not_written", run_id=result.run_id, reason=f"run {result.state}")
    return result
