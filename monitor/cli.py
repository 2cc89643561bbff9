"""The ``monitor`` command line: thin commands over inventory, pipeline, reports and jobs.

Errors a user can fix (config, usage, database) print one line and exit 1; a
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from monitor import __version__
from monitor.config import ConfigError, Settings, load_settings
from monitor.store.db import DatabaseError, open_engine, redact_db_url
from reports.data import ReportError

app = typer.Typer(
    name="monitor",
    help="link-media-monitor: check a news corpus's links and images, keep history, report and alert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


class UsageError(Exception):
    """A command was called in a way that cannot work; exit code 1."""


@dataclass(slots=True)
class Context:
    config: Path | None
    overrides: dict[str, Any]
    debug: bool

    def settings(self, **extra: Any) -> Settings:
        return load_settings(self.config, {**self.overrides, **extra})


def _version(value: bool) -> None:
    if value:
        typer.echo(f"link-media-monitor {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config file (default: ./config.toml if present)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL; overrides config and MONITOR_DATABASE_URL."),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="auto, json or console.", show_default=False)
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options apply to every command."""
    ctx.obj = Context(
        config=config,
        overrides={"database_url": database_url, "logging.format": log_format, "logging.level": log_level},
        debug=debug,
    )


def _ctx(ctx: typer.Context) -> Context:
    obj = ctx.obj
    assert isinstance(obj, Context)
    return obj


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _errors(c: Context) -> Iterator[None]:
    """Turn expected failures into one line and exit code 1."""
    try:
        yield
    except (ConfigError, DatabaseError, UsageError, ReportError) as exc:
        if c.debug:
            raise
        fail(str(exc))
    except (typer.Exit, KeyboardInterrupt):
        raise
    except DBAPIError as exc:  # locked, read-only, full or gone: the driver's first line, not the SQL
        if c.debug:
            raise
        reason = str(exc.orig or exc).strip().splitlines() or [type(exc).__name__]
        fail(f"database error: {reason[0]} (run with --debug for the traceback)")
    except Exception as exc:
        if c.debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")


def engine_for(settings: Settings) -> Engine:
    try:
        return open_engine(settings.database_url)
    except DatabaseError:
        raise
    except Exception as exc:  # pragma: no cover - defensive: driver errors on connect
        raise DatabaseError(f"cannot open database {redact_db_url(settings.database_url)}: {exc}") from None


class InventoryFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _is_tty() -> bool:
    return sys.stderr.isatty()


@app.command()
def links(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Corpus roots or files (default: corpus.roots).")
    ] = None,
    fmt: Annotated[InventoryFormat, typer.Option("--format", "-f", help="Inventory output format.")] = (
        InventoryFormat.table
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the inventory to FILE.")
    ] = None,
    summary_only: Annotated[bool, typer.Option("--summary", help="Print only the summary.")] = False,
) -> None:
    """Read the corpus, update the URL inventory in the database, and print it with a summary."""
    from monitor.inventory_output import run_links

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        engine = engine_for(settings)
        code = run_links(engine, settings, paths or None, fmt.value, output, summary_only, _is_tty())
    raise typer.Exit(code)


class CheckFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
def check(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(help="Corpus roots or files (default: corpus.roots).")
    ] = None,
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", help="Output format of the problems.")] = (
        CheckFormat.table
    ),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the output to FILE.")] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Finish the last interrupted run: check only what it had not checked."),
    ] = False,
    only_failing: Annotated[
        bool, typer.Option("--only-failing", help="Re-check only URLs whose current state is failing.")
    ] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Global request limit.")] = None,
    per_host: Annotated[int | None, typer.Option("--per-host", help="Requests in flight per host.")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Hard deadline per URL, seconds.")
    ] = None,
    allow_private: Annotated[
        bool | None,
        typer.Option("--allow-private/--no-allow-private", help="Allow private/loopback targets."),
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
    wait_run: Annotated[
        bool,
        typer.Option(
            "--wait-run",
            help="[distributed] Wait until the workers have finished the run, then print its problems.",
        ),
    ] = False,
) -> None:
    """Read the corpus, check every distinct URL concurrently, store history and print the problems.

    With [distributed] enabled the run is planned into host shards and queued for `monitor worker`
    processes; the command returns at once (exit 0) unless --wait-run.

    Exit code 0 when nothing counts as an error, 2 when something does, 1 for usage or config errors.
    """
    from monitor import check_cmd
    from monitor.logs import configure_logging

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings(
            **{
                "http.concurrency": concurrency,
                "http.per_host_concurrency": per_host,
                "http.total_timeout": timeout,
                "safety.allow_private": allow_private,
            }
        )
        configure_logging(settings.logging)
        from monitor.executors import ProcrastinateExecutor, executor_for

        executor = executor_for(settings)
        if isinstance(executor, ProcrastinateExecutor):
            from monitor.distributed import commands
            from monitor.distributed.queue import open_engine_serialized

            if resume:
                raise UsageError("--resume is for local runs; a distributed run resumes by itself")
            code = commands.check(
                open_engine_serialized(settings),
                settings,
                executor,
                paths=paths or None,
                fmt=fmt.value,
                output=output,
                only_failing=only_failing,
                wait_lock=wait,
                wait_run=wait_run,
            )
            raise typer.Exit(code)
        engine = engine_for(settings)
        code = check_cmd.run(
            engine,
            settings,
            paths=paths or None,
            fmt=fmt.value,
            output=output,
            resume=resume,
            only_failing=only_failing,
            tty=_is_tty(),
            wait=wait,
        )
    raise typer.Exit(code)


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


@app.command()
def report(
    ctx: typer.Context,
    run: Annotated[str, typer.Option("--run", help="Run id, or 'latest'.")] = "latest",
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")] = None,
    section: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            "-s",
            help="Only these sections (repeatable): summary, broken, images, moved, changes, blocked, "
            "findings, corpus_errors, trend.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most URLs listed per section (0: no cap).")] = 1000,
    trend_runs: Annotated[int | None, typer.Option("--trend-runs", help="Runs shown in the trend.")] = None,
) -> None:
    """Render the report of a run: what is broken, image size problems, changes, trends."""
    from monitor.check_cmd import emit
    from reports import build_report

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        engine = engine_for(settings)
        if run != "latest" and not run.isdigit():
            raise UsageError(f"--run must be a run id or 'latest', not {run!r}")
        data = build_report(
            engine,
            None if run == "latest" else int(run),
            sections=section or None,
            trend_runs=trend_runs or settings.reports.trend_runs,
            limit=limit or None,
        )
        emit(data, fmt.value, output)


@app.command()
def history(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The URL as written in an article (it is normalised first).")],
    runs: Annotated[int, typer.Option("--runs", help="Most recent runs shown.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print a URL's timeline (verdict, status, time, size per run), its occurrences and current state."""
    from monitor.history import print_history

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        code = print_history(engine_for(settings), url, runs=runs, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Print the last run's summary and the state of the corpus (problems by kind, oldest breakage)."""
    from monitor.history import print_status

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        print_status(engine_for(settings), as_json=as_json)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply database migrations (every command also does this on start)."""
    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        engine_for(settings).dispose()
        typer.echo(f"database {redact_db_url(settings.database_url)} is up to date")


@app.command()
def schedule(ctx: typer.Context) -> None:
    """Run the job scheduler in the foreground: [jobs.*] on their schedules until SIGTERM or SIGINT.

    The first signal lets a running check finish in-flight requests (jobs.shutdown_grace_seconds),
    marks its run interrupted and exits 0; a second signal exits at once.
    """
    from jobs.scheduler import ScheduleError, job_specs, serve
    from monitor import aio
    from monitor.logs import configure_logging

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        configure_logging(settings.logging)
        try:
            specs = job_specs(settings)
        except ScheduleError as exc:
            raise UsageError(str(exc)) from None
        from monitor.executors import executor_for

        executor_for(settings)  # distributed mode without PostgreSQL fails now, not at 02:30
        engine = engine_for(settings)
        code = aio.run(serve(settings, engine, specs=specs), settings.http.event_loop)
        engine.dispose()
    raise typer.Exit(code)


@app.command("jobs")
def list_jobs(ctx: typer.Context) -> None:
    """List the scheduled jobs: enabled flag, schedule and next run time (UTC)."""
    from jobs.scheduler import ScheduleError, describe_jobs

    c = _ctx(ctx)
    with _errors(c):
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
    name: Annotated[str, typer.Argument(help="nightly_check, recheck_failing or prune_history.")],
) -> None:
    """Run one job now, in the foreground, with the same locking as the scheduler.

    Exit code 0 when it went fine (or had nothing to do), 2 when a check found errors,
    1 for usage errors, a failed job, or another check holding the lock.
    """
    from jobs.runner import JOB_NAMES, canonical
    from jobs.scheduler import run_now
    from monitor import aio
    from monitor.logs import configure_logging

    c = _ctx(ctx)
    with _errors(c):
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
    from monitor.check_cmd import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, busy_message

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
        from reports import build_report

        summary = build_report(engine, outcome.run_id, sections=("summary",)).summary
        problems = outcome.errors + (summary.findings + summary.corpus_errors if summary else 0)
        typer.echo(f"{result.job}: run {outcome.run_id} {outcome.state}, {outcome.checked} checked", err=True)
        return EXIT_PROBLEMS if problems else EXIT_OK
    details = ", ".join(f"{k} {v}" for k, v in outcome.as_log().items()) if hasattr(outcome, "as_log") else ""
    typer.echo(f"{result.job}: done{': ' + details if details else ''}", err=True)
    return EXIT_OK


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, help="Shards run at once (default: [distributed] worker_concurrency)."
        ),
    ] = None,
) -> None:
    """Run shard jobs of distributed runs from the PostgreSQL queue until SIGTERM or SIGINT.

    The first signal stops dispatching, commits in-flight results and hands running shards
    back to the queue; a second signal stops at once. Needs a PostgreSQL database_url.
    """
    from monitor import aio
    from monitor.distributed.worker import serve
    from monitor.logs import configure_logging

    c = _ctx(ctx)
    with _errors(c):
        settings = c.settings()
        configure_logging(settings.logging)
        from monitor.distributed.queue import end_idle_transactions, open_engine_serialized, require_postgres

        require_postgres(settings)
        engine = open_engine_serialized(settings)
        end_idle_transactions(engine, settings)
        code = aio.run(serve(settings, engine, concurrency), settings.http.event_loop)
        engine.dispose()
    raise typer.Exit(code)


@app.command()
def runs(
    ctx: typer.Context,
    run_id: Annotated[int | None, typer.Argument(help="One run: list its shards too.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until the run ends.")] = False,
    fail_run: Annotated[
        bool,
        typer.Option(
            "--fail",
            help="Abandon RUN_ID: mark it failed, cancel its unfinished shards and jobs, free the lock.",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="With --fail: why (kept as the run's error).")
    ] = None,
) -> None:
    """List recent runs with their shards' progress (done/total, URLs checked, hand-backs) and state.

    With ``RUN_ID --fail`` a running distributed run is abandoned: its workers stop at their
    next heartbeat and commit nothing more, and the next run can start. Exit 1 when the run
    is not running (already ended, unknown or local).
    """
    from monitor.distributed import commands

    c = _ctx(ctx)
    with _errors(c):
        if reason is not None and not fail_run:
            raise UsageError("--reason goes with --fail")
        settings = c.settings()
        if not fail_run:
            code = commands.runs(engine_for(settings), run_id, watch)
        elif run_id is None or watch:
            raise UsageError("--fail needs a RUN_ID (and no --watch)")
        else:
            from monitor.logs import configure_logging

            configure_logging(settings.logging)
            why = reason or "abandoned with `monitor runs --fail`"
            code = commands.fail(engine_for(settings), settings, run_id, why)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point: usage errors exit 1 (click's default, 2, means "problems found" here)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer bundles click)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        sys.exit(0 if type(exc).__name__ == "NoArgsIsHelpError" else 1)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
