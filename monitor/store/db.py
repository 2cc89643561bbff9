"""Engine creation and schema migration.

SQLite is the embedded default (WAL mode, so readers never block the single writer);
any SQLAlchemy URL selects another database. Every command calls ``open_engine``,
which upgrades the schema with Alembic before anything else touches it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseError(Exception):
    """The configured database cannot be opened or migrated; the message says which and why."""


class StoreError(DatabaseError):
    """The database refused a write that retrying cannot fix (disk full, locked, gone); the run stops."""


def redact_db_url(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def dialect_insert(conn: Connection, table: Any) -> Any:
    """The database's own INSERT, which has ON CONFLICT (PostgreSQL and SQLite are supported).

    The dialect module is imported on first use: PostgreSQL's package costs about 45 ms of every
    command's start-up, and a SQLite user never needs it.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: Any) -> Any:
    """INSERT that skips rows whose key already exists."""
    return dialect_insert(conn, table).on_conflict_do_nothing()


# (SQL, bind names in order, bind processors, positional?, defaults of the columns rows leave out)
_Prepared = tuple[str, tuple[str, ...], dict[str, Callable[[Any], Any]], bool, dict[str, Any]]
_PREPARED: dict[tuple[str, str, tuple[str, ...]], _Prepared] = {}


def executemany(conn: Connection, name: str, build: Callable[[], Any], rows: list[dict[str, Any]]) -> None:
    """One executemany of ``rows`` with the statement compiled once per dialect and key set.

    Why not ``conn.execute(stmt, rows)``: SQLAlchemy rebuilds and converts every row's
    parameters in Python, which cost more CPU than SQLite's own work on the result rows and
    ran on the writer thread, competing with the event loop for the GIL. Here each row
    becomes a plain tuple (or dict, for named paramstyles), with the column types' own bind
    processors (e.g. SQLite's datetime formatting) applied to the columns that have one, and
    the columns' scalar defaults to the columns the rows leave out.
    """
    keys = tuple(rows[0])
    cache_key = (conn.dialect.name, name, keys)
    prepared = _PREPARED.get(cache_key)
    if prepared is None:
        stmt = build()
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        names = tuple(compiled.positiontup or compiled.binds)
        defaults: dict[str, Any] = {}
        for bind in names:
            if bind not in keys:
                default = stmt.table.c[bind].default
                if default is None or not default.is_scalar:
                    raise ValueError(
                        f"{name}: the rows give no value for column {bind!r}, which has no default"
                    )
                defaults[bind] = default.arg
        processors = {
            bind: proc
            for bind in names
            if (proc := compiled.binds[bind].type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
            is not None
        }
        prepared = _PREPARED[cache_key] = (
            str(compiled),
            names,
            processors,
            bool(compiled.positiontup),
            defaults,
        )
    sql, names, processors, positional, defaults = prepared
    if defaults:
        rows = [{**defaults, **row} for row in rows]
    if positional:
        params: list[Any] = [
            tuple(processors[n](row[n]) if n in processors else row[n] for n in names) for row in rows
        ]
    else:
        params = [{n: processors[n](row[n]) if n in processors else row[n] for n in names} for row in rows]
    conn.exec_driver_sql(sql, params)


def normalise_db_url(url: str) -> str:
    """Plain ``postgresql://`` means psycopg 3 here (psycopg2 is not a dependency)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-dialect settings this tool relies on."""
    try:
        sa_url = make_url(normalise_db_url(url))
    except ArgumentError as exc:
        raise DatabaseError(f"database_url {url!r} is not a valid SQLAlchemy URL: {exc}") from None
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    try:
        return create_engine(sa_url, pool_pre_ping=True, **kwargs)
    except Exception as exc:  # missing driver, bad options
        raise DatabaseError(f"cannot use database {redact_db_url(url)}: {exc}") from None


_MIGRATION_LOCK = 7_331_002  # pg advisory lock key: one migrating process at a time


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` on ``engine``.

    Two processes opening a new database at once must not both create the tables: on
    PostgreSQL an advisory transaction lock serialises them, on SQLite ``BEGIN IMMEDIATE``
    takes the write lock before Alembic looks at the schema.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def head_revision() -> str:
    """The newest migration's revision: our files are named ``NNNN_name.py`` with revision ``NNNN``."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _at_head(engine: Engine) -> bool:
    """The schema is already current (the common case: one cheap query instead of loading Alembic)."""
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except Exception:  # no table yet, or no database: upgrade() decides and reports
        return False
    return found == head_revision()


def open_engine(url: str) -> Engine:
    """Create the engine and bring its schema up to date; errors become ``DatabaseError``."""
    engine = create(url)
    try:
        if not _at_head(engine):
            upgrade(engine)
    except DatabaseError:
        raise
    except Exception as exc:
        engine.dispose()
        raise DatabaseError(f"cannot open database {redact_db_url(url)}: {_first_line(exc)}") from None
    return engine


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
