"""`monitor export`: every URL of a run, ok ones included, as JSON Lines or CSV, streamed.

For spreadsheets, BI tools and scripts; ``reports.export`` holds the query and the format.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.app import app, context_of, engine_for, user_errors


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.command()
def export(
    ctx: typer.Context,
    run: Annotated[
        int | None, typer.Option("--run", metavar="N", help="Run id (default: the latest run).")
    ] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            metavar="[jsonl|csv]",
            help="Output format: jsonl (one JSON object per line) or csv.",
        ),
    ] = ExportFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE.")
    ] = None,
) -> None:
    """Export one record per distinct URL of a run: verdict, facts and every place it occurs.

    Rows stream from the database, so a run of millions of URLs exports in constant memory.
    Exit code 0, or 1 when there is no such run.
    """
    from reports.export import write_csv, write_jsonl

    writer = write_jsonl if fmt is ExportFormat.jsonl else write_csv
    c = context_of(ctx)
    with user_errors(c):
        engine = engine_for(c.settings())
        if output is None:
            writer(sys.stdout, engine, run)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    count = writer(out, engine, run)
                partial.replace(output)  # a reader never sees half an export
            finally:
                partial.unlink(missing_ok=True)
            print(f"{count} URLs written to {output}", file=sys.stderr)
