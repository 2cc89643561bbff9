"""Procrastinate wiring: the app, its connection string, its schema and deferring shard jobs.

The queue lives in the same PostgreSQL database (and schema, via the URL's search_path) as
the monitor's tables, so a distributed deployment needs nothing beyond that database.
Procrastinate's schema is applied on first use under an advisory lock; its version is
pinned in pyproject because its SQL travels with the package.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from monitor.config import ConfigError, Settings
from monitor.store.db import normalise_db_url, open_engine

log = structlog.get_logger("monitor.distributed")

CHECK_SHARD = "monitor.check_shard"
SCHEMA_LOCK = 0x6C6D6D31  # pg advisory lock id guarding the schema bootstrap ("lmm1")
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def require_postgres(settings: Settings) -> None:
    """Distributed mode shares one queue and one ledger: only PostgreSQL can hold them."""
    backend = make_url(normalise_db_url(settings.database_url)).get_backend_name()
    if backend != "postgresql":
        raise ConfigError(
            f"[distributed] needs a PostgreSQL database_url (postgresql://...), not {backend!r}; "
            "set [distributed] enabled = false to check in this process"
        )


def conninfo(database_url: str) -> str:
    """libpq connection string for the SQLAlchemy URL, with TCP keepalives (a dead peer is noticed)."""
    import psycopg.conninfo

    url = make_url(normalise_db_url(database_url))
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        **KEEPALIVES,
    }
    params.update({k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()})
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def build_app(settings: Settings, pool_size: int = 4) -> Any:
    """A procrastinate App on the configured database (tasks are registered by the worker)."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(settings.database_url), min_size=1, max_size=pool_size
    )
    return procrastinate.App(connector=connector)


def ensure_schema(settings: Settings) -> None:
    """Apply procrastinate's schema once per database schema; racing processes wait on an advisory lock."""
    import procrastinate.schema
    import psycopg

    with psycopg.connect(conninfo(settings.database_url)) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone() == (None,):
            conn.execute(procrastinate.schema.SchemaManager.get_schema())  # no params: % is literal
            log.info("queue.schema_applied")


async def defer_shard(app: Any, queue: str, run_id: int, shard_id: int, lock: str | None) -> int | None:
    """Queue one check_shard job; None when a job for this shard is already waiting (queueing lock)."""
    import procrastinate.exceptions

    try:
        return int(
            await app.configure_task(
                CHECK_SHARD, queue=queue, lock=lock, queueing_lock=f"shard:{shard_id}"
            ).defer_async(run_id=run_id, shard_id=shard_id)
        )
    except procrastinate.exceptions.AlreadyEnqueued:
        return None


def end_idle_transactions(engine: Engine, settings: Settings) -> None:
    """Have PostgreSQL end a worker's session that sits in a transaction past the stall limit.

    A worker frozen (SIGSTOP, a stalled VM) inside a batch transaction would otherwise hold
    its shard row locked for ever and the reaper could never hand the shard back; when it
    thaws, its connection is gone and its batch is refused by the fence on retry.
    """
    from sqlalchemy import event

    timeout_ms = int(settings.distributed.stall_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _limit(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        dbapi_conn.commit()


def open_engine_serialized(settings: Settings) -> Engine:
    """Open (and migrate) the database under an advisory lock: a fleet starting at once migrates once."""
    with psycopg.connect(conninfo(settings.database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK + 1,))
        try:
            return open_engine(settings.database_url)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK + 1,))


async def cancel_run_jobs(app: Any, queue: str, run_id: int) -> int:
    """Delete the run's shard jobs still waiting in the queue; returns how many.

    Only tidiness: a waiting job of an ended run would claim nothing and be skipped. Jobs
    already running are not touched; the shard ledger fences them out.
    """
    dropped = 0
    for job in await app.job_manager.list_jobs_async(queue=queue, task=CHECK_SHARD, status="todo"):
        if job.id is not None and job.task_kwargs.get("run_id") == run_id:
            dropped += bool(await app.job_manager.cancel_job_by_id_async(job.id, delete_job=True))
    return dropped
