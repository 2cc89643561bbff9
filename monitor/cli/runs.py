"""`monitor worker` and `monitor runs`: distributed mode's workers, and every run's progress."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Annotated

import typer
from sqlalchemy import Engine, select

from monitor import aio
from monitor.cli.app import UsageError, app, context_of, engine_for, user_errors
from monitor.config import Settings


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            metavar="N",
            min=1,
            help="Shards run at once (default: [distributed] worker_concurrency).",
        ),
    ] = None,
) -> None:
    """Run shard jobs of distributed runs from the PostgreSQL queue until SIGTERM or SIGINT.

    The first signal stops dispatching, commits in-flight results and hands running shards
    back to the queue; a second signal stops at once. Needs a PostgreSQL database_url.
    """
    from monitor.distributed.queue import end_idle_transactions, open_engine_serialized, require_postgres
    from monitor.distributed.worker import serve
    from monitor.logs import configure_logging

    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        configure_logging(settings.logging)

        require_postgres(settings)
        engine = open_engine_serialized(settings)
        end_idle_transactions(engine, settings)
        code = aio.run(serve(settings, engine, concurrency), settings.http.event_loop)
        engine.dispose()
    raise typer.Exit(code)


@app.command()
def runs(
    ctx: typer.Context,
    run_id: Annotated[
        int | None, typer.Argument(metavar="RUN_ID", help="One run: list its shards too.")
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch/--no-watch", show_default=False, help="Refresh every 2 s until the run ends."),
    ] = False,
    fail_run: Annotated[
        bool,
        typer.Option(
            "--fail/--no-fail",
            show_default=False,
            help="Abandon RUN_ID: mark it failed, cancel its unfinished shards and jobs, free the lock.",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="With --fail: why (kept as the run's error)."),
    ] = None,
) -> None:
    """List recent runs with their shards' progress (done/total, URLs checked, hand-backs) and state.

    With `RUN_ID --fail` a running distributed run is abandoned: its workers stop at their
    next heartbeat and commit nothing more, and the next run can start. Exit 1 when the run
    is not running (already ended, unknown or local).
    """
    from monitor.logs import configure_logging

    c = context_of(ctx)
    with user_errors(c):
        if reason is not None and not fail_run:
            raise UsageError("--reason goes with --fail")
        settings = c.settings()
        if not fail_run:
            code = follow_runs(engine_for(settings), run_id, watch)
        elif run_id is None or watch:
            raise UsageError("--fail needs a RUN_ID (and no --watch)")
        else:
            configure_logging(settings.logging)
            why = reason or "abandoned with `monitor runs --fail`"
            code = abandon(engine_for(settings), settings, run_id, why)
    raise typer.Exit(code)


def follow_runs(engine: Engine, run_id: int | None, watch: bool, every: float = 2.0) -> int:
    """Print recent runs (or one run's shards); with ``watch`` refresh until the run(s) stop running."""
    from monitor.store import runs as store

    while True:
        text = format_runs(engine, run_id)
        if watch and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text, flush=True)
        if not watch:
            return 0
        if run_id is not None and store.run_state(engine, run_id) != "running":
            return 0
        if run_id is None and " running " not in text:
            return 0
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            return 0
        if not sys.stdout.isatty():
            print(flush=True)


def abandon(engine: Engine, settings: Settings, run_id: int, reason: str) -> int:
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


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def format_runs(engine: Engine, run_id: int | None, limit: int = 10) -> str:
    """The ``monitor runs`` text: recent runs with shard progress, or one run's shards in detail."""
    from monitor.distributed.runs import progress
    from monitor.store.tables import RUNS

    with engine.connect() as conn:
        ids = (
            [run_id]
            if run_id is not None
            else list(conn.execute(select(RUNS.c.id).order_by(RUNS.c.id.desc()).limit(limit)).scalars())
        )
    runs_rows = [("RUN", "STATE", "TRIGGER", "STARTED (UTC)", "SHARDS", "CHECKED", "REQUEUES")]
    shard_rows = [("SHARD", "STATE", "ATTEMPT", "CHECKED", "BEAT AGO", "WORKER", "HOSTS")]
    for rid in ids:
        p = progress(engine, rid)
        by_state = p["by_state"]
        shards_txt = "local"
        if p["shards"]:
            shards_txt = f"{by_state.get('done', 0)}/{p['shards']} done, {by_state.get('running', 0)} running"
            for state in ("failed", "cancelled"):
                if by_state.get(state):
                    shards_txt += f", {by_state[state]} {state}"
        started = p["started_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        runs_rows.append(
            (
                str(rid),
                p["state"],
                p["trigger"],
                started,
                shards_txt,
                f"{p['checked']}/{p['targets']}",
                str(p["requeues"]),
            )
        )
        for s in p["shard_rows"] if run_id is not None else []:
            ago = f"{(p['now'] - s.heartbeat_at).total_seconds():.0f}s" if s.heartbeat_at else "-"
            hosts = json.loads(s.hosts)
            where = ", ".join(hosts[:3]) + (f" +{len(hosts) - 3}" if len(hosts) > 3 else "")
            if s.url_lo is not None:
                where += f" [ids {s.url_lo}-{s.url_hi}]"
            shard_rows.append(
                (
                    str(s.shard_no),
                    s.state,
                    str(s.attempt),
                    f"{s.checked}/{s.url_count}",
                    ago,
                    s.worker or "-",
                    where,
                )
            )
    lines = _table(runs_rows)
    if len(shard_rows) > 1:
        lines += ["", *_table(shard_rows)]
    if run_id is not None and (spans := progress(engine, run_id)["timeline"]):
        lines += ["", "timeline: " + describe_timeline(spans)]
    return "\n".join(lines)


def describe_timeline(spans: dict[str, float]) -> str:
    """One line from ``distributed.runs.timeline``: queue pick-up, checking, the pacing shard, fan-in."""
    parts = [f"first shard picked up {spans['pickup_s']:.1f} s after planning"]
    if "checking_s" in spans:
        parts.append(f"shards ran {spans['checking_s']:.1f} s (longest {spans['longest_shard_s']:.1f} s)")
    if "fanin_s" in spans:
        parts.append(f"closed {spans['fanin_s']:.1f} s after the last shard")
    return "; ".join(parts)
