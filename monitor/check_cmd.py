"""`monitor check`: run a check with signal handling and a progress bar, then print the outcome.

SIGINT/SIGTERM stop dispatching and let in-flight requests finish for the grace
period; a second signal stops at once. Either way finished results are kept and the
run is marked interrupted.

Every check holds the ``corpus-check`` lease, so a second check (CLI or scheduled)
exits 1 naming the holder, or with ``wait`` queues behind the first.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from monitor import aio
from monitor.config import Settings
from monitor.pipeline import RunOutcome, run_check
from monitor.progress import file_progress
from monitor.signals import stop_on_signals
from monitor.store.lease import LeaseBusy, hold_corpus_check
from reports import ReportData

EXIT_OK, EXIT_USAGE, EXIT_PROBLEMS = 0, 1, 2
CHECK_SECTIONS = ("summary", "broken", "images", "moved", "blocked", "findings", "corpus_errors")


async def _run_with_signals(
    settings: Settings, engine: Engine, tty: bool, wait: float | None = None, **kwargs: object
) -> RunOutcome:
    stop = asyncio.Event()
    running = False
    # a second signal, or one while still waiting for the lock, stops at once
    with stop_on_signals(stop, now=lambda: not running):
        # a lost lease (we stalled past its TTL and someone took over) stops the run like a signal
        async with hold_corpus_check(engine, settings.jobs.lock_ttl_seconds, wait=wait or False, lost=stop):
            running = True
            with file_progress(tty, "checking") as tick:
                return await run_check(
                    settings,
                    engine,
                    stop=stop,
                    on_progress=lambda d, t: tick(d, t),
                    **kwargs,  # type: ignore[arg-type]
                )


def emit(data: ReportData, fmt: str, output: Path | None) -> None:
    """Write ``data`` to ``output``, or print it (coloured tables on a terminal)."""
    from reports import render
    from reports.as_table import print_report

    if output is None and fmt == "table" and sys.stdout.isatty():
        from rich.console import Console

        print_report(data, Console())
        return
    text = render(data, fmt)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def run(
    engine: Engine,
    settings: Settings,
    *,
    paths: Sequence[str] | None,
    fmt: str,
    output: Path | None,
    resume: bool,
    only_failing: bool,
    tty: bool,
    wait: float | None = None,
) -> int:
    """The `check` command body; returns the exit code."""
    from reports import build_report

    try:
        outcome = aio.run(
            _run_with_signals(
                settings,
                engine,
                tty,
                wait,
                paths=paths,
                resume=resume,
                only_failing=only_failing,
                trigger="recheck" if only_failing else "cli",
            ),
            settings.http.event_loop,
        )
    except LeaseBusy as busy:
        print(f"error: {busy_message(busy)}", file=sys.stderr)
        return EXIT_USAGE
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("check stopped; finished results are kept (`monitor check --resume` goes on)", file=sys.stderr)
        return EXIT_USAGE
    data = build_report(
        engine, outcome.run_id, sections=CHECK_SECTIONS, trend_runs=settings.reports.trend_runs
    )
    emit(data, fmt, output)
    summary = data.summary
    assert summary is not None
    problems = summary.errors + summary.findings + summary.corpus_errors
    if outcome.state == "interrupted":
        print(f"run {outcome.run_id} interrupted; finish it with `monitor check --resume`", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def busy_message(busy: LeaseBusy) -> str:
    """What a user sees when another check holds the lock."""
    return (
        f"another check is running (holder {busy.holder}, lease expires at {busy.until}); "
        "use --wait SECONDS to queue behind it"
    )
