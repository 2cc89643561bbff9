"""Report files: written atomically under the configured pattern, and marked once written.

Reports go to ``reports.folder`` as ``<file_pattern>.<ext>`` for each configured format,
plus a ``latest.<ext>`` copy; every file is written to a temporary name and renamed
into place, so a reader (a web server, a mail job) never sees a half-written report.
A finished scheduled run is marked once its files are written: one whose writer died or
failed (a crash, a full disk) is written by the next nightly job or distributed sweep.
Both the jobs and the distributed finalizer call this module; it imports neither.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from sqlalchemy import Engine

from monitor.clock import utcnow
from monitor.config import ReportSettings
from monitor.store import runs as store
from reports.data import build_report
from reports.model import ReportData, ReportError
from reports.render import EXTENSIONS, render

log = structlog.get_logger("monitor.jobs")


def write_reports(
    data: ReportData, folder: str | Path, formats: Sequence[str], pattern: str = "report-{run_id}-{date}"
) -> list[Path]:
    """Write each format to ``folder/pattern.ext`` atomically (a reader never sees half a file).

    ``pattern`` may use ``{run_id}`` and ``{date}`` (the run's start day, UTC, YYYY-MM-DD).
    """
    base = pattern.format(run_id=data.run.id, date=data.run.started_at.strftime("%Y-%m-%d"))
    if not base or Path(base).name != base:
        raise ReportError(f"report file pattern {pattern!r} must give a plain file name, got {base!r}")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        text = render(data, fmt)
        path = target / f"{base}{EXTENSIONS[fmt]}"
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{base}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def write_run_reports(engine: Engine, reports: ReportSettings, run_id: int) -> list[Path]:
    """Render run ``run_id`` in every configured format and mark them written; returns the files.

    ``latest.*`` is written too unless a newer scheduled run has finished (a late catch-up must
    not replace the newest report).
    """
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
