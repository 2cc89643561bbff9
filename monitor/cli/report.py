"""`monitor report`: render a stored run's report in any format, whole or by section."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.app import UsageError, app, context_of, engine_for, user_errors
from reports.sections import NAMES_TEXT  # the help text needs the names; app.py has loaded reports


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


@app.command()
def report(
    ctx: typer.Context,
    run: Annotated[str, typer.Option("--run", metavar="ID|latest", help="Run id, or 'latest'.")] = "latest",
    fmt: Annotated[
        ReportFormat,
        typer.Option("--format", "-f", metavar="[table|markdown|csv|json|html]", help="Report format."),
    ] = ReportFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the report to FILE.")
    ] = None,
    section: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            "-s",
            metavar="NAME",
            help=f"Only these sections (repeatable): {NAMES_TEXT}.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="Most URLs listed per section (0: no cap).")
    ] = 1000,
    trend_runs: Annotated[
        int | None, typer.Option("--trend-runs", metavar="N", help="Runs shown in the trend.")
    ] = None,
    since_run: Annotated[
        int | None,
        typer.Option(
            "--since-run", metavar="N", help="Changes compared with run N (default: the previous run)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DURATION",
            help="Changes compared with the last run started this long ago: 24h, 7d, 90m.",
        ),
    ] = None,
) -> None:
    """Render the report of a run: what is broken, image size problems, changes, trends.

    With --since-run or --since, the changes section (newly broken, recovered, newly mismatched
    images) compares with that run instead of the previous one. Exit code 0, or 1 when the run or
    the baseline does not exist.
    """
    from monitor.cli.check import emit
    from reports import build_report

    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        engine = engine_for(settings)
        if run != "latest" and not run.isdigit():
            raise UsageError(f"--run must be a run id or 'latest', not {run!r}")
        if since_run is not None and since is not None:
            raise UsageError("give --since-run or --since, not both")
        data = build_report(
            engine,
            None if run == "latest" else int(run),
            sections=section or None,
            trend_runs=trend_runs or settings.reports.trend_runs,
            limit=limit or None,
            since_run=since_run,
            since=parse_since(since) if since is not None else None,
        )
        emit(data, fmt.value, output)


UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> timedelta:
    """``24h``, ``7d``, ``90m``, ``2w`` as a duration."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match is None or int(match[1]) == 0:
        raise UsageError(f"--since {text!r}: give a duration like 24h, 7d or 90m")
    return timedelta(**{UNITS[match[2]]: int(match[1])})
