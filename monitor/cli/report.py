"""`monitor report`: render a stored run's report in any format, whole or by section."""

from __future__ import annotations

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
) -> None:
    """Render the report of a run: what is broken, image size problems, changes, trends."""
    from monitor.cli.check import emit
    from reports import build_report

    c = context_of(ctx)
    with user_errors(c):
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
