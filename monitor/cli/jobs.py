"""`monitor schedule`, `monitor jobs` and `monitor run-job`: scheduled jobs, daemon or one-off."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from monitor import aio
from monitor.cli.app import UsageError, app, context_of, engine_for, user_errors


@app.command()
def schedule(ctx: typer.Context) -> None:
    """Run the job scheduler in the foreground: [jobs.*] on their schedules until SIGTERM or SIGINT.

    The first signal lets a running check finish in-flight requests (jobs.shutdown_grace_seconds),
    marks its run interrupted and exits 0; a second signal exits at once.
    """
    from jobs.scheduler import ScheduleError, job_specs, serve
    from monitor.distributed.executor import executor_for
    from monitor.logs import configure_logging

    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        configure_logging(settings.logging)
        try:
            specs = job_specs(settings)
        except ScheduleError as exc:
            raise UsageError(str(exc)) from None

        executor_for(settings)  # distributed mode without PostgreSQL fails now, not at 02:30
        engine = engine_for(settings)
        code = aio.run(serve(settings, engine, specs=specs), settings.http.event_loop)
        engine.dispose()
    raise typer.Exit(code)


@app.command("jobs")
def list_jobs(ctx: typer.Context) -> None:
    """List the scheduled jobs: enabled flag, schedule and next run time (UTC)."""
    from jobs.scheduler import ScheduleError, describe_jobs

    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        engine = engine_for(settings)
        try:
            infos = describe_jobs(settings, engine)
        except ScheduleError as exc:
            raise UsageError(str(exc)) from None
        rows = [
            (
                i.name,
                "yes" if i.enabled else "no",
                i.schedule,
                i.next_run.strftime("%Y-%m-%d %H:%M:%S UTC") if i.next_run else "-",
                i.note,
            )
            for i in infos
        ]
        header = ("JOB", "ENABLED", "SCHEDULE", "NEXT RUN", "NOTE")
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        for row in [header, *rows]:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@app.command("run-job")
def run_job(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The job: nightly_check, recheck_failing or prune_history.")
    ],
) -> None:
    """Run one job now, in the foreground, with the same locking as the scheduler.

    Exit code 0 when it went fine (or had nothing to do), 2 when a check found errors,
    1 for usage errors, a failed job, or another check holding the lock.
    """
    from jobs.runner import JOB_NAMES, canonical
    from jobs.scheduler import run_now
    from monitor.logs import configure_logging

    c = context_of(ctx)
    with user_errors(c):
        job = canonical(name)
        if job is None:
            raise UsageError(f"unknown job {name!r}; choose from {', '.join(JOB_NAMES)}")
        settings = c.settings()
        configure_logging(settings.logging)
        engine = engine_for(settings)
        result = aio.run(run_now(settings, engine, job), settings.http.event_loop)
        code = _job_exit_code(engine, result)
        engine.dispose()
    raise typer.Exit(code)


def _job_exit_code(engine: Engine, result: Any) -> int:
    """Like `check`: 2 when a check run found errors (or findings, corpus errors), 1 when it could not run."""
    from monitor.cli.check import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, busy_message
    from reports import build_report

    if result.status == "busy":
        typer.echo(f"error: {busy_message(result.value)}", err=True)
        return EXIT_USAGE
    if result.status == "failed":
        typer.echo(f"error: job {result.job} failed: {result.detail}", err=True)
        return EXIT_USAGE
    if result.status == "skipped":
        typer.echo(f"{result.job}: skipped: {result.detail}", err=True)
        return EXIT_OK
    outcome = result.value
    if hasattr(outcome, "run_id"):
        summary = build_report(engine, outcome.run_id, sections=("summary",)).summary
        problems = outcome.errors + (summary.findings + summary.corpus_errors if summary else 0)
        typer.echo(f"{result.job}: run {outcome.run_id} {outcome.state}, {outcome.checked} checked", err=True)
        return EXIT_PROBLEMS if problems else EXIT_OK
    details = ", ".join(f"{k} {v}" for k, v in outcome.as_log().items()) if hasattr(outcome, "as_log") else ""
    typer.echo(f"{result.job}: done{': ' + details if details else ''}", err=True)
    return EXIT_OK
