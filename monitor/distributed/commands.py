"""Command bodies for distributed mode: ``check`` (plan + queue, optionally wait), ``runs``, ``--fail``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Settings
from monitor.executors import ProcrastinateExecutor
from monitor.store.lease import LeaseBusy


def check(
    engine: Engine,
    settings: Settings,
    executor: ProcrastinateExecutor,
    *,
    paths: Sequence[str] | None,
    fmt: str,
    output: Path | None,
    only_failing: bool,
    wait_lock: float | None,
    wait_run: bool,
) -> int:
    """Queue a run; with ``wait_run`` follow it to the end and print its report like a local check."""
    from monitor.check_cmd import CHECK_SECTIONS, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, busy_message, emit

    async def go() -> tuple[int, str | None]:
        queued = await executor.start(
            settings,
            engine,
            paths=paths,
            trigger="recheck" if only_failing else "cli",
            only_failing=only_failing,
            wait_lock=wait_lock,
        )
        print(
            f"run {queued.run_id} queued: {queued.shards} shards, {queued.targets} URLs "
            f"(follow it with `monitor runs {queued.run_id} --watch`)",
            file=sys.stderr,
        )
        if not wait_run:
            return queued.run_id, None
        return queued.run_id, await executor.finish(settings, engine, queued.run_id)

    try:
        run_id, state = asyncio.run(go())
    except LeaseBusy as busy:
        print(f"error: {busy_message(busy)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("stopped waiting; the workers go on with the run", file=sys.stderr)
        return EXIT_USAGE
    if state is None:
        return EXIT_OK
    from reports import build_report

    data = build_report(engine, run_id, sections=CHECK_SECTIONS, trend_runs=settings.reports.trend_runs)
    emit(data, fmt, output)
    summary = data.summary
    assert summary is not None
    if state != "finished":
        print(f"run {run_id} ended {state}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_PROBLEMS if summary.errors + summary.findings + summary.corpus_errors else EXIT_OK


def runs(engine: Engine, run_id: int | None, watch: bool, every: float = 2.0) -> int:
    """Print recent runs (or one run's shards); with ``watch`` refresh until the run(s) stop running."""
    from monitor.distributed.runs import format_runs, run_state

    while True:
        text = format_runs(engine, run_id)
        if watch and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text, flush=True)
        if not watch:
            return 0
        if run_id is not None and run_state(engine, run_id) != "running":
            return 0
        if run_id is None and " running " not in text:
            return 0
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            return 0
        if not sys.stdout.isatty():
            print(flush=True)


def fail(engine: Engine, settings: Settings, run_id: int, reason: str) -> int:
    """``monitor runs RUN_ID --fail``: abandon a running distributed run; 1 when it is not running."""
    from monitor.distributed.runs import NotRunning, abandon_run

    try:
        done = asyncio.run(abandon_run(settings, engine, run_id, reason))
    except NotRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"run {run_id} failed: {done.shards_cancelled} unfinished shards cancelled, "
        f"{done.jobs_cancelled} queued jobs dropped, the check lock released",
        file=sys.stderr,
    )
    return 0
