"""`monitor ack URL… --reason TEXT [--until DATE]` and `monitor unack URL…`: triage of known breakage.

An acknowledged URL is still checked; while acknowledged its failures are not errors (no exit
code 2) and raise no alert events, and reports list it apart ("acknowledged"). Who acknowledged
it comes from the environment ($MONITOR_USER, else $USER), so a report says whom to ask.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

import typer

from monitor.cli.app import UsageError, app, context_of, engine_for, user_errors
from monitor.clock import utcnow
from monitor.store.acks import AckChange, acknowledge, unacknowledge
from monitor.textsafe import inert


def parse_until(text: str, now: datetime) -> datetime:
    """A date means "through that day (UTC)"; a datetime without zone is UTC. It must be in the future."""
    try:
        day = date.fromisoformat(text)
        until = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    except ValueError:
        try:
            until = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"--until {text!r}: not a date (YYYY-MM-DD) or an ISO date-time") from None
        until = until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC)
    if until <= now:
        raise UsageError(f"--until {text}: already past")
    return until


def who() -> str:
    """The acknowledging person, from the environment."""
    return os.environ.get("MONITOR_USER") or os.environ.get("USER") or "unknown"


def _report(changes: list[AckChange], verb: str) -> int:
    """One line per URL; exit code 1 when any URL could not be changed."""
    failed = 0
    for change in changes:
        if change.done:
            typer.echo(f"{verb} {inert(change.url)}")
        else:
            failed += 1
            typer.echo(f"error: {inert(change.url)}: {change.error}", err=True)
    return 1 if failed else 0


@app.command()
def ack(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="URLs as written in articles (normalised first).")],
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why the breakage is accepted (in reports).")
    ],
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="DATE", help="Last day (YYYY-MM-DD, UTC) or ISO time."),
    ] = None,
) -> None:
    """Acknowledge failing URLs: still checked, but not errors and never alerted, until they recover.

    Exit code 0 when every URL was acknowledged, 1 when one is unknown or an option is wrong.
    """
    c = context_of(ctx)
    with user_errors(c):
        if not reason.strip():
            raise UsageError("--reason must not be empty")
        now = utcnow()
        limit = parse_until(until, now) if until is not None else None
        engine = engine_for(c.settings())
        code = _report(
            acknowledge(engine, urls, reason=reason.strip(), by=who(), until=limit, now=now), "acknowledged"
        )
    raise typer.Exit(code)


@app.command()
def unack(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="URLs to stop acknowledging.")],
) -> None:
    """End acknowledgements now. Exit code 0, or 1 when a URL is unknown or was not acknowledged."""
    c = context_of(ctx)
    with user_errors(c):
        code = _report(unacknowledge(engine_for(c.settings()), urls), "unacknowledged")
    raise typer.Exit(code)
