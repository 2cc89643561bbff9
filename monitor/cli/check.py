"""`monitor check`: start a run through the configured executor, then print its problems.

Locally the run is checked here with signal handling and a progress bar: SIGINT/SIGTERM
stop dispatching and let in-flight requests finish for the grace period; a second signal
stops at once. Either way finished results are kept and the run is marked interrupted.
In distributed mode the run is queued for the workers and, with ``--wait-run``, followed
to its end. Every check holds the ``corpus-check`` lease, so a second check (CLI or
scheduled) exits 1 naming the holder, or with ``--wait`` queues behind the first.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.app import UsageError, app, context_of, user_errors

if TYPE_CHECKING:  # the stages load in the command bodies, so `monitor --help` stays quick
    from sqlalchemy import Engine

    from monitor.config import Settings
    from monitor.run.check import RunOutcome, RunRequest
    from monitor.run.executors import Executor, QueuedRun
    from monitor.store.lease import LeaseBusy
    from reports import ReportData

EXIT_OK, EXIT_USAGE, EXIT_PROBLEMS = 0, 1, 2


async def _start(
    settings: Settings, engine: Engine, executor: Executor, request: RunRequest, tty: bool
) -> RunOutcome | QueuedRun:
    from monitor.progress import file_progress
    from monitor.signals import stop_on_signals

    stop = asyncio.Event()
    running = False

    def locked() -> None:
        nonlocal running
        running = True

    # a second signal, or one while still waiting for the lock, stops at once
    with stop_on_signals(stop, now=lambda: not running), file_progress(tty, "checking") as tick:
        return await executor.start(
            settings, engine, request, stop=stop, on_progress=lambda d, t: tick(d, t), on_locked=locked
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
    executor: Executor,
    request: RunRequest,
    *,
    fmt: str,
    output: Path | None,
    wait_run: bool = False,
    tty: bool | None = None,
) -> int:
    """The `check` command body; returns the exit code."""
    from monitor import aio
    from monitor.run.executors import QueuedRun
    from monitor.store.lease import LeaseBusy
    from reports import build_report
    from reports.sections import CHECK_SECTIONS

    tty = sys.stderr.isatty() if tty is None else tty
    try:
        started = aio.run(_start(settings, engine, executor, request, tty), settings.http.event_loop)
    except LeaseBusy as busy:
        print(f"error: {busy_message(busy)}", file=sys.stderr)
        return EXIT_USAGE
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("check stopped; finished results are kept (`monitor check --resume` goes on)", file=sys.stderr)
        return EXIT_USAGE
    publish_metrics(settings, engine, None if isinstance(started, QueuedRun) else started)
    if isinstance(started, QueuedRun):
        run_id = started.run_id
        print(
            f"run {run_id} queued: {started.shards} shards, {started.targets} URLs "
            f"(follow it with `monitor runs {run_id} --watch`)",
            file=sys.stderr,
        )
        if not wait_run:
            return EXIT_OK
        try:
            state = asyncio.run(executor.finish(settings, engine, run_id))
        except KeyboardInterrupt:
            print("stopped waiting; the workers go on with the run", file=sys.stderr)
            return EXIT_USAGE
    else:
        run_id, state = started.run_id, started.state
    data = build_report(engine, run_id, sections=CHECK_SECTIONS, trend_runs=settings.reports.trend_runs)
    emit(data, fmt, output)
    summary = data.summary
    assert summary is not None
    problems = summary.errors + summary.findings + summary.corpus_errors
    if isinstance(started, QueuedRun) and state != "finished":
        print(f"run {run_id} ended {state}", file=sys.stderr)
        return EXIT_USAGE
    if state == "interrupted":
        print(f"run {run_id} interrupted; finish it with `monitor check --resume`", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def publish_metrics(settings: Settings, engine: Engine, outcome: RunOutcome | None) -> None:
    """Rewrite the textfile metrics after a run, when ``metrics.textfile`` is set."""
    if not settings.metrics.textfile:
        return
    from monitor.run.metrics import Metrics  # prometheus-client: loaded only when metrics are on

    metrics = Metrics(settings.metrics)
    if outcome is not None:
        metrics.record_events(outcome.events)
    metrics.publish(engine)


def busy_message(busy: LeaseBusy) -> str:
    """What a user sees when another check holds the lock."""
    return (
        f"another check is running (holder {busy.holder}, lease expires at {busy.until}); "
        "use --wait SECONDS to queue behind it"
    )


class CheckFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
def check(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="PATH", help="Corpus roots or files (default: corpus.roots)."),
    ] = None,
    fmt: Annotated[
        CheckFormat,
        typer.Option(
            "--format", "-f", metavar="[table|json|markdown]", help="Output format of the problems."
        ),
    ] = (CheckFormat.table),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the output to FILE.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            show_default=False,
            help="Finish the last interrupted run: check only what it had not checked.",
        ),
    ] = False,
    only_failing: Annotated[
        bool,
        typer.Option(
            "--only-failing/--no-only-failing",
            show_default=False,
            help="Re-check only URLs whose current state is failing.",
        ),
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", metavar="N", help="Global request limit.")
    ] = None,
    per_host: Annotated[
        int | None, typer.Option("--per-host", metavar="N", help="Requests in flight per host.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Hard deadline per URL, seconds.")
    ] = None,
    allow_private: Annotated[
        bool | None,
        typer.Option(
            "--allow-private/--no-allow-private", show_default=False, help="Allow private/loopback targets."
        ),
    ] = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            help="If another check is running, wait up to SECONDS for it instead of exiting 1.",
        ),
    ] = None,
    archive: Annotated[
        bool | None,
        typer.Option(
            "--archive/--no-archive",
            show_default=False,
            help="Look up archived copies of broken pages in this run, or not (default: [archive] enabled).",
        ),
    ] = None,
    wait_run: Annotated[
        bool,
        typer.Option(
            "--wait-run/--no-wait-run",
            show_default=False,
            help="[distributed] Wait until the workers have finished the run, then print its problems.",
        ),
    ] = False,
) -> None:
    """Read the corpus, check every distinct URL concurrently, store history and print the problems.

    With [distributed] enabled the run is planned into host shards and queued for `monitor worker`
    processes; the command returns at once (exit 0) unless --wait-run.

    Exit code 0 when nothing counts as an error, 2 when something does, 1 for usage or config errors.
    """
    from monitor.logs import configure_logging
    from monitor.run.check import RunRequest
    from monitor.run.executors import LocalExecutor
    from monitor.run.inventory import scan_roots_of

    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings(
            **{
                "http.concurrency": concurrency,
                "http.per_host_concurrency": per_host,
                "http.total_timeout": timeout,
                "safety.allow_private": allow_private,
                "archive.enabled": archive,
            }
        )
        scan_roots_of(settings.corpus, paths or None)  # a missing root: one line, exit 1, nothing touched
        configure_logging(settings.logging)
        if settings.distributed.enabled:  # psycopg and the queue (about 12 MB) only when needed
            from monitor.distributed.executor import executor_for

            executor = executor_for(settings)
        else:
            executor = LocalExecutor()
        if resume and executor.name != "local":
            raise UsageError("--resume is for local runs; a distributed run resumes by itself")
        if archive is not None and executor.name != "local":
            raise UsageError(
                "--archive/--no-archive is for local runs; workers follow their [archive] settings"
            )
        request = RunRequest(
            paths=paths or None,
            trigger="recheck" if only_failing else "cli",
            only_failing=only_failing,
            resume=resume,
            wait_lock=wait,
        )
        engine = executor.open_engine(settings)
        code = run(engine, settings, executor, request, fmt=fmt.value, output=output, wait_run=wait_run)
    raise typer.Exit(code)
