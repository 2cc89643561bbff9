"""`monitor history URL` and `monitor status`: a URL's timeline, and the corpus at a glance.

Both read the database only; text goes through ``inert`` because URLs and titles are
other people's input.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy import Engine

from monitor.cli.app import app, context_of, engine_for, user_errors
from monitor.clock import utcnow
from monitor.store.figures import nightly_freshness
from monitor.store.history import corpus_status, url_history
from monitor.textsafe import inert


@app.command()
def history(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Argument(metavar="URL", help="The URL as written in an article (it is normalised first).")
    ],
    runs: Annotated[int, typer.Option("--runs", metavar="N", help="Most recent runs shown.")] = 30,
    as_json: Annotated[
        bool, typer.Option("--json/--no-json", show_default=False, help="Print JSON instead of text.")
    ] = False,
) -> None:
    """Print a URL's timeline (verdict, status, time, size per run), its occurrences and current state."""
    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        code = print_history(engine_for(settings), url, runs=runs, as_json=as_json)
    raise typer.Exit(code)


EXIT_STALE = 3


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def status(
    ctx: typer.Context,
    fmt: Annotated[
        StatusFormat, typer.Option("--format", "-f", metavar="[table|json]", help="Output format.")
    ] = StatusFormat.table,
    as_json: Annotated[
        bool, typer.Option("--json/--no-json", show_default=False, help="Same as --format json.")
    ] = False,
    max_age: Annotated[
        float | None,
        typer.Option(
            "--max-age",
            metavar="HOURS",
            min=0,
            help="Exit 3 when the last successful nightly run is older (default: "
            "jobs.nightly_check.max_age_hours; 0: never).",
        ),
    ] = None,
) -> None:
    """Print the last run's summary and the state of the corpus (problems by kind, oldest breakage).

    Exit code 3 when the last successful nightly run is older than --max-age hours (or there is
    none), so a cron job or a Kubernetes probe can use it; 0 otherwise, 1 for errors.
    """
    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings(**{"jobs.nightly_check.max_age_hours": max_age})
        age = settings.jobs.nightly_check.max_age_hours
        stale = print_status(engine_for(settings), as_json=as_json or fmt == StatusFormat.json, max_age=age)
    raise typer.Exit(EXIT_STALE if stale else 0)


def print_history(engine: Engine, raw_url: str, *, runs: int, as_json: bool) -> int:
    """Print the history; exit code 1 when the URL is not in the inventory."""
    data = url_history(engine, raw_url, runs)
    if data is None:
        print(
            f"error: {inert(raw_url)} is not in the inventory (run `monitor links` or `monitor check`)",
            file=sys.stderr,
        )
        return 1
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    out = [
        f"{inert(data['url'])}  ({data['kind']}, host {inert(data['host'])}, first seen {data['first_seen']})"
    ]
    state = data["state"]
    out.append(
        "state: {alert_state}; last {last_verdict} (HTTP {last_status}) at {last_checked}; "
        "last ok {last_ok}; failing since {failing_since} ({consecutive_failures} runs)".format(**state)
    )
    out.append(f"occurrences ({len(data['occurrences'])}):")
    for occ in data["occurrences"]:
        size = f"  declared {occ['declared']}" if occ["declared"] else ""
        out.append(f"  {inert(occ['article'])}  {occ['location']}  {occ['role']}{size}")
    out.append(f"timeline ({len(data['timeline'])} runs, oldest first):")
    for t in data["timeline"]:
        size = f"  {t['size']}" if t["size"] else ""
        nm = "  (not modified)" if t["not_modified"] else ""
        out.append(
            f"  run {t['run_id']:>5}  {t['checked_at']}  {t['verdict']:<18} {t['http_status'] or '-':>4}  "
            f"{t['elapsed_ms']:>6} ms{size}{nm}  {inert(t['reason'])}"
        )
    print("\n".join(out))
    return 0


def print_status(engine: Engine, *, as_json: bool, max_age: float) -> bool:
    """Print the status; True when the nightly run is stale (see ``nightly_freshness``)."""
    data = corpus_status(engine)
    nightly = nightly_freshness(engine, max_age, utcnow())
    data["nightly"] = nightly
    if as_json:
        print(json.dumps(data, indent=2))
        return bool(nightly["stale"])
    run = data["last_run"]
    lines = []
    if run is None:
        lines.append("no run yet: `monitor check` runs the first one")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items())) or "nothing checked"
        lines.append(
            f"last run {run['id']} ({run['trigger']}): {run['state']}, started {run['started_at']}, "
            f"finished {run['finished_at']}; {run['checked']}/{run['total_targets']} checked: {counts}"
        )
    lines.append(
        f"corpus: {data['files']} files, {data['urls']} distinct URLs, {data['corpus_errors']} bad files"
    )
    problems = ", ".join(f"{k} {v}" for k, v in data["problems"].items()) or "none"
    lines.append(f"current problems: {problems}")
    findings = ", ".join(f"{k} {v}" for k, v in sorted(data["findings"].items())) or "none"
    lines.append(f"findings in articles: {findings}")
    if data["oldest_unresolved"]:
        lines.append("oldest unresolved breakage:")
        for item in data["oldest_unresolved"]:
            since = f"since {item['failing_since']} ({item['runs']} runs)"
            lines.append(f"  {since} {item['verdict']}: {inert(item['url'])}")
    if max_age > 0:
        when = nightly["last_nightly_success"] or "never"
        verdict = f"STALE (older than {max_age:g} h)" if nightly["stale"] else f"within {max_age:g} h"
        lines.append(f"last successful nightly run: {when}: {verdict}")
    print("\n".join(lines))
    return bool(nightly["stale"])
