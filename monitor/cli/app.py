"""The typer app, its global options, and what every command shares: settings, engine, errors.

Errors a user can fix (config, usage, database) print one line and exit 1; a
traceback appears only with ``--debug``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from monitor import __version__
from monitor.config import ConfigError, Settings, load_settings
from monitor.corpus.discover import RootUnavailable
from monitor.store.db import DatabaseError, open_engine, redact_db_url
from reports.data import ReportError

app = typer.Typer(
    name="monitor",
    help="link-media-monitor: check a news corpus's links and images, keep history, report and alert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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
        typer.Option(
            "--config", "-c", metavar="FILE", help="TOML config file (default: ./config.toml if present)."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", metavar="URL", help="SQLAlchemy URL; overrides config and MONITOR_DATABASE_URL."
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", metavar="FORMAT", help="Log format: auto, json or console.")
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", metavar="LEVEL", help="Log level: debug, info, warning or error."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug/--no-debug", help="Show tracebacks on errors.", show_default=False)
    ] = False,
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


def context_of(ctx: typer.Context) -> Context:
    """The global options of this invocation."""
    obj = ctx.obj
    assert isinstance(obj, Context)
    return obj


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(c: Context) -> Iterator[None]:
    """Turn expected failures into one line and exit code 1."""
    try:
        yield
    except (ConfigError, DatabaseError, UsageError, ReportError, RootUnavailable) as exc:
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


def is_tty() -> bool:
    """Progress bars and colours only on a terminal."""
    return sys.stderr.isatty()
