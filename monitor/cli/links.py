"""`monitor links`: run the inventory pass and print the inventory (table, JSON or CSV).

Rows are streamed from the database, so printing a million occurrences holds one
row at a time, not the whole inventory.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine, select

from monitor.cli.app import app, context_of, engine_for, is_tty, user_errors
from monitor.config import Settings
from monitor.store.scope import Roots, under_roots
from monitor.textsafe import csv_cell, inert

if TYPE_CHECKING:
    from monitor.run.inventory import SyncReport

COLUMNS = ("article", "location", "role", "related", "url", "raw_url", "declared_width", "declared_height")


def iter_inventory(engine: Engine, roots: Roots = None) -> Iterator[dict[str, object]]:
    """Every occurrence of the live inventory (under ``roots``), ordered by article path and location."""
    from monitor.store.tables import ARTICLES as a
    from monitor.store.tables import OCCURRENCES as o
    from monitor.store.tables import URLS as u
    from monitor.urls import redact_url

    query = (
        select(
            a.c.path,
            o.c.location,
            o.c.role,
            o.c.related,
            u.c.url,
            o.c.raw_url,
            o.c.declared_width,
            o.c.declared_height,
        )
        .select_from(o.join(a, o.c.article_id == a.c.id).outerjoin(u, o.c.url_id == u.c.id))
        .where(under_roots(a.c.path, roots))
        .order_by(a.c.path, o.c.id)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=2000).execute(query):
            item = dict(zip(COLUMNS, row, strict=True))
            # the inventory keeps credentials to fetch with; nothing printed shows them
            item["url"] = redact_url(item["url"]) if item["url"] else None
            item["raw_url"] = redact_url(str(item["raw_url"]))
            yield item


def iter_findings(engine: Engine, roots: Roots = None) -> Iterator[dict[str, object]]:
    from monitor.store.tables import ARTICLES as a
    from monitor.store.tables import FINDINGS as f

    query = (
        select(a.c.path, f.c.location, f.c.kind, f.c.message, f.c.value, f.c.expected)
        .select_from(f.join(a, f.c.article_id == a.c.id))
        .where(under_roots(a.c.path, roots))
        .order_by(a.c.path, f.c.id)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield dict(zip(("article", "location", "kind", "message", "value", "expected"), row, strict=True))


@contextmanager
def _open(output: Path | None) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
    else:
        with output.open("w", encoding="utf-8", newline="") as fh:
            yield fh


def _write(fmt: str, out: IO[str], engine: Engine, summary: dict[str, object], roots: Roots) -> None:
    if fmt == "json":
        out.write('{"schema": "link-media-monitor/inventory", "version": 1, "summary": ')
        out.write(json.dumps(summary))
        out.write(', "findings": ')
        out.write(json.dumps(list(iter_findings(engine, roots))))
        out.write(', "occurrences": [')
        for i, row in enumerate(iter_inventory(engine, roots)):
            out.write(("," if i else "") + "\n" + json.dumps(row))
        out.write("\n]}\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for row in iter_inventory(engine, roots):
            writer.writerow([csv_cell(v) for v in row.values()])
    else:
        for row in iter_inventory(engine, roots):
            size = f"{row['declared_width']}x{row['declared_height']}" if row["declared_width"] else ""
            shown = row["url"] or f"(invalid) {row['raw_url']}"
            fields = (str(row["article"]), str(row["location"]), str(row["role"]), str(shown), size)
            out.write("  ".join(inert(f) for f in fields) + "\n")


def summary_of(engine: Engine, report: SyncReport, roots: Roots = None) -> dict[str, object]:
    from monitor.store import inventory as store

    c = store.counts(engine, roots)
    return {
        "files": c.files,
        "articles": c.articles,
        "corpus_errors": c.corpus_errors,
        "occurrences": c.occurrences,
        "distinct_urls": c.distinct_urls,
        "invalid_urls": c.invalid_urls,
        "amp_mismatches": c.amp_mismatches,
        "wrong_types": c.wrong_types,
        "parsed_this_run": report.parsed,
        "unchanged": report.unchanged,
        "deleted": report.deleted,
        "elapsed_s": round(report.elapsed_s, 3),
    }


def run_links(
    engine: Engine,
    settings: Settings,
    paths: Sequence[str] | None,
    fmt: str,
    output: Path | None,
    summary_only: bool,
    tty: bool,
) -> int:
    """The `links` command body; returns the exit code (0: inventory updated)."""
    from monitor.progress import file_progress
    from monitor.run.inventory import scan_roots_of, sync_inventory

    roots = scan_roots_of(settings.corpus, paths)  # RootUnavailable: exit 1, nothing touched
    with file_progress(tty, "reading corpus") as tick:
        report = sync_inventory(engine, settings.corpus, roots, on_file=tick)
    for err in report.errors:
        print(f"corpus error: {inert(str(err))}", file=sys.stderr)
    scope = None if "." in roots else tuple(roots)
    summary = summary_of(engine, report, scope)
    if not summary_only:
        with _open(output) as out:
            _write(fmt, out, engine, summary, scope)
    if fmt != "json" or summary_only or output is not None:
        line = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items())
        print(line, file=sys.stderr if (fmt != "table" and output is None) else sys.stdout)
    return 0


class InventoryFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def links(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="PATH", help="Corpus roots or files (default: corpus.roots)."),
    ] = None,
    fmt: Annotated[
        InventoryFormat,
        typer.Option("--format", "-f", metavar="[table|json|csv]", help="Inventory output format."),
    ] = (InventoryFormat.table),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the inventory to FILE.")
    ] = None,
    summary_only: Annotated[
        bool, typer.Option("--summary/--no-summary", show_default=False, help="Print only the summary.")
    ] = False,
) -> None:
    """Read the corpus, update the URL inventory in the database, and print it with a summary."""
    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        engine = engine_for(settings)
        code = run_links(engine, settings, paths or None, fmt.value, output, summary_only, is_tty())
    raise typer.Exit(code)
