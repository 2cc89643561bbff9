"""`monitor db upgrade`: apply the migrations (every command also does this on start)."""

from __future__ import annotations

import typer

from monitor.cli.app import context_of, db_app, engine_for, user_errors
from monitor.store.db import redact_db_url


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply database migrations (every command also does this on start)."""
    c = context_of(ctx)
    with user_errors(c):
        settings = c.settings()
        engine_for(settings).dispose()
        typer.echo(f"database {redact_db_url(settings.database_url)} is up to date")
