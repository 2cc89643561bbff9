"""The nightly check: the whole corpus under the corpus-check lease, then report files.

Reports go to ``reports.folder`` as ``<file_pattern>.<ext>`` for each configured format,
plus a ``latest.<ext>`` copy; every file is written to a temporary name and renamed
into place, so a reader (a web server, a mail job) never sees a half-written report.
A finished scheduled run is marked once its files are written: one whose writer died or
failed (a crash, a full disk) is written by the next nightly job or distributed sweep.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog
from sqlalchemy import Engine

from monitor.config import ReportSettings, Settings
from monitor.executors import ProcrastinateExecutor, QueuedRun
from monitor.pipeline import RunOutcome, run_check, utcnow
from monitor.store import results as store
from monitor.store.lease import hold_corpus_check

log = structlog.get_logger("monitor.jobs")


async def nightly_check(settings: Settings, engine: Engine, stop: asyncio.Event) -> RunOutcome | QueuedRun:
    """Check the corpus (trigger ``schedule``) and write report files; raises LeaseBusy when a check runs.

    An interrupted run (shutdown, lost lease) writes no reports: ``latest.*`` keeps
    showing the last complete run. In distributed mode the run is planned and queued
    here; the workers check it and the last one to finish writes the reports.
    """
    if settings.distributed.enabled:
        queued = await ProcrastinateExecutor().start(settings, engine, trigger="schedule")
        log.info("run.queued", run_id=queued.run_id, shards=queued.shards, targets=queued.targets)
        return queued
    await asyncio.to_thread(write_pending_reports, engine, settings.reports)
    async with hold_corpus_check(engine, settings.jobs.lock_ttl_seconds, lost=stop):
        outcome = await run_check(settings, engine, trigger="schedule", stop=stop)
    if outcome.state == "finished":
        await asyncio.to_thread(write_run_reports, engine, settings.reports, outcome.run_id)
    else:
        log.warning("reports.not_written", run_id=outcome.run_id, reason=f"run {outcome.state}")
    return outcome


def write_run_reports(engine: Engine, reports: ReportSettings, run_id: int) -> list[Path]:
    """Render run ``run_id`` in every configured format and mark them written; returns the files.

    ``latest.*`` is written too unless a newer scheduled run has finished (a late catch-up must
    not replace the newest report).
    """
    from reports import build_report, write_reports

    data = build_report(engine, run_id, trend_runs=reports.trend_runs)
    written = write_reports(data, reports.folder, reports.formats, reports.file_pattern)
    newest = store.newest_scheduled_run(engine)
    if newest is None or newest <= run_id:
        written += write_reports(data, reports.folder, reports.formats, "latest")
    store.mark_reports_written(engine, run_id, utcnow())
    log.info("reports.written", run_id=run_id, files=[str(p) for p in written])
    return written


# (database, run id) -> monotonic time before which a holding-off caller in this process skips it
_HELD_OFF: dict[tuple[str, int], float] = {}


def write_pending_reports(engine: Engine, reports: ReportSettings, *, hold_off: float = 0.0) -> int:
    """Write the files of finished scheduled runs whose writer died or failed; returns how many runs.

    A run that still cannot be written (the folder unwritable, say) is logged and stays pending.
    ``hold_off`` (seconds) spares a frequent caller (a worker's reaper) from rebuilding and
    logging the same failing report every period: with it, this process tries a run that failed
    again only after that long. Without it (the nightly job) every pending run is tried.
    """
    from reports import ReportError

    done = 0
    for run_id in store.unwritten_reports(engine):
        key = (str(engine.url), run_id)
        if hold_off and time.monotonic() < _HELD_OFF.get(key, 0.0):
            continue
        try:
            write_run_reports(engine, reports, run_id)
        except (OSError, ReportError) as exc:
            log.error("reports.failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}")
            _HELD_OFF[key] = time.monotonic() + hold_off
            continue
        _HELD_OFF.pop(key, None)
        done += 1
    return done
