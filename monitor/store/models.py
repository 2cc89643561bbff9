"""SQL tables. Storage types only: stages exchange ``monitor.types`` values, and the store's
query modules (``results``, ``inventory``, ...) convert at this boundary. Enums are stored as
plain strings; Core queries use the same tables under readable names from ``store.tables``.

Schema changes go through Alembic (``monitor/migrations``); never ``create_all``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Tables that grow by one row per URL per night: a 32-bit id runs out after 2**31 rows, 215
# nights at 10 million URLs, pruning or not (the sequence only goes up). SQLite's INTEGER
# PRIMARY KEY is 64-bit already, and only that spelling autoincrements there.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


class ArticleRow(SQLModel, table=True):
    """One corpus file as last read; ``deleted_at`` set when the file disappears (history stays)."""

    __tablename__ = "article"
    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(sa_column_kwargs={"unique": True}, index=False, max_length=1024)
    title: str | None = Field(default=None, sa_type=Text)
    size: int = Field(default=0, sa_type=BigInteger)
    mtime_ns: int = Field(default=0, sa_type=BigInteger)
    sha256: str = Field(default="", max_length=64)
    first_seen: datetime
    last_seen: datetime
    deleted_at: datetime | None = None


class UrlRow(SQLModel, table=True):
    """A normalised URL (fetch target) plus its current state across runs."""

    __tablename__ = "url"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=Text, sa_column_kwargs={"unique": True})
    host: str = Field(index=True, max_length=300)
    kind: str = Field(max_length=16)
    first_seen: datetime
    # current state (updated by the store when results arrive)
    last_checked: datetime | None = None
    last_run_id: int | None = None
    last_verdict: str | None = Field(default=None, max_length=32, index=True)
    last_severity: str | None = Field(default=None, max_length=16)
    last_status: int | None = None
    last_ok: datetime | None = None
    failing_since: datetime | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified: str | None = Field(default=None, max_length=64)
    alert_state: str = Field(default="ok", max_length=16)
    alert_failures: int = 0  # streaks as the alert state machine counts them (neutral runs skipped)
    alert_successes: int = 0
    recent: str = Field(default="", max_length=64)  # alert flags of the last counted runs, newest last


class AckRow(SQLModel, table=True):
    """An editor's acknowledgement of a failing URL: still checked, but not an error and never alerted.

    Ends when the URL recovers (the batch that sees it good deletes the row) or at ``until``.
    """

    __tablename__ = "ack"
    url_id: int = Field(primary_key=True, foreign_key="url.id")
    reason: str = Field(sa_type=Text)
    by: str = Field(max_length=200)
    at: datetime
    until: datetime | None = None


class ArchiveCopyRow(SQLModel, table=True):
    """The archive's answer for a broken page: its closest copy, or none (``snapshot_url`` NULL).

    A cache: kept ``archive.ttl_hours`` from ``looked_up_at``, and only for the ``endpoint`` that
    answered; a failed lookup writes no row, so the next run asks again.
    """

    __tablename__ = "archive_copy"
    url_id: int = Field(primary_key=True, foreign_key="url.id")
    endpoint: str = Field(max_length=300)
    looked_up_at: datetime
    snapshot_url: str | None = Field(default=None, sa_type=Text)
    snapshot_at: str | None = Field(default=None, max_length=20)  # the archive's YYYYMMDDhhmmss


class OccurrenceRow(SQLModel, table=True):
    """One place in one article where a URL is written."""

    __tablename__ = "occurrence"
    __table_args__ = (Index("ix_occurrence_url", "url_id"),)
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True)
    url_id: int | None = Field(default=None, foreign_key="url.id")
    raw_url: str = Field(sa_type=Text)
    location: str = Field(max_length=300)
    role: str = Field(max_length=16)
    related: bool = False
    declared_width: int | None = None
    declared_height: int | None = None
    title: str | None = Field(default=None, sa_type=Text)  # a related item's own title (title drift)


class FindingRow(SQLModel, table=True):
    """A problem found without network access (invalid URL, AMP cache mismatch, wrong type)."""

    __tablename__ = "finding"
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True)
    location: str = Field(max_length=300)
    kind: str = Field(max_length=32, index=True)
    message: str = Field(sa_type=Text)
    value: str | None = Field(default=None, sa_type=Text)
    expected: str | None = Field(default=None, sa_type=Text)


class CorpusErrorRow(SQLModel, table=True):
    """A file that could not be read as an article, as of the last inventory."""

    __tablename__ = "corpus_error"
    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(sa_column_kwargs={"unique": True}, max_length=1024)
    kind: str = Field(max_length=32)
    message: str = Field(sa_type=Text)
    line: int | None = None
    column: int | None = None
    first_seen: datetime
    last_seen: datetime


class RunRow(SQLModel, table=True):
    """One check run. ``state``: running, finished, interrupted, failed."""

    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    state: str = Field(default="running", max_length=16, index=True)
    trigger: str = Field(default="cli", max_length=32)
    config_fingerprint: str = Field(default="", max_length=32)
    total_targets: int = 0
    checked: int = 0
    counts: str = Field(default="{}", sa_type=Text)  # JSON: verdict -> count
    error: str | None = Field(default=None, sa_type=Text)
    holder: str | None = Field(default=None, max_length=200)
    # a finished scheduled run's report files: NULL until written (a writer that died is caught up)
    reports_written_at: datetime | None = None
    # JSON list of the corpus roots the run checks (see store/scope.py); NULL: the whole inventory
    roots: str | None = Field(default=None, sa_type=Text)


class ResultRow(SQLModel, table=True):
    """What one URL showed in one run: the facts and the verdict."""

    __tablename__ = "result"
    __table_args__ = (
        UniqueConstraint("run_id", "url_id", name="uq_result_run_url"),
        Index("ix_result_url_run", "url_id", "run_id"),
        Index("ix_result_run_verdict", "run_id", "verdict"),
        Index("ix_result_checked_at", "checked_at"),
    )
    id: int | None = Field(default=None, primary_key=True, sa_type=ROW_ID)
    run_id: int = Field(foreign_key="run.id")
    url_id: int = Field(foreign_key="url.id")
    checked_at: datetime
    verdict: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    reason: str = Field(sa_type=Text)
    http_status: int | None = None
    final_url: str | None = Field(default=None, sa_type=Text)
    redirects: str | None = Field(default=None, sa_type=Text)  # JSON list of [url, status, location]
    attempts: int = 1
    elapsed_ms: int = 0
    method: str | None = Field(default=None, max_length=8)
    content_type: str | None = Field(default=None, max_length=200)
    bytes_read: int = Field(default=0, sa_type=BigInteger)
    failure: str | None = Field(default=None, max_length=32)
    image_format: str | None = Field(default=None, max_length=16)
    image_width: int | None = None
    image_height: int | None = None
    not_modified: bool = False
    image_digest: str | None = Field(default=None, max_length=120)  # placeholder-image detection
    placeholder_uses: int | None = None  # URLs or articles (the larger) showing this digest on its host


class SizeCheckRow(SQLModel, table=True):
    """Declared versus real image size for one occurrence in one run."""

    __tablename__ = "size_check"
    __table_args__ = (
        UniqueConstraint("run_id", "occurrence_id", name="uq_size_check_run_occ"),
        Index("ix_size_check_run_verdict", "run_id", "verdict"),
    )
    id: int | None = Field(default=None, primary_key=True, sa_type=ROW_ID)
    run_id: int = Field(foreign_key="run.id")
    occurrence_id: int = Field(foreign_key="occurrence.id")
    url_id: int = Field(foreign_key="url.id")
    verdict: str = Field(max_length=16)
    declared_width: int | None = None
    declared_height: int | None = None
    actual_width: int | None = None
    actual_height: int | None = None


class StateChangeRow(SQLModel, table=True):
    """An alert-state transition of a URL (ok → broken, broken → ok, → flapping)."""

    __tablename__ = "state_change"
    __table_args__ = (Index("ix_state_change_run", "run_id"), Index("ix_state_change_url", "url_id"))
    id: int | None = Field(default=None, primary_key=True, sa_type=ROW_ID)
    run_id: int = Field(foreign_key="run.id")
    url_id: int = Field(foreign_key="url.id")
    at: datetime
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)


class LeaseRow(SQLModel, table=True):
    """A named lock with an expiry, so a crashed holder never blocks future runs forever."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=200)
    acquired_at: datetime
    expires_at: datetime


class RollupRow(SQLModel, table=True):
    """Daily count of results per verdict, kept when old result rows are pruned."""

    __tablename__ = "rollup"
    day: date = Field(primary_key=True)
    verdict: str = Field(primary_key=True, max_length=32)
    count: int = 0


class RunShardRow(SQLModel, table=True):
    """One shard of a distributed run: a set of whole hosts, or one url-id slice of a split host
    holding ``host_share`` of its per-host limit.

    ``attempt`` is the fencing token: every hand-back (worker dead, stopped, failed) bumps it,
    and a batch commits only while the shard still carries the attempt its worker claimed.
    ``state``: queued, running, done, failed; cancelled when an operator failed the run
    (``monitor runs RUN_ID --fail``).
    """

    __tablename__ = "run_shard"
    __table_args__ = (
        UniqueConstraint("run_id", "shard_no", name="uq_run_shard_no"),
        Index("ix_run_shard_state", "state", "heartbeat_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    shard_no: int
    hosts: str = Field(sa_type=Text)  # JSON list of host names
    url_lo: int | None = None  # url-id slice (inclusive) of a split giant host; None: the whole hosts
    url_hi: int | None = None
    lock: str | None = Field(default=None, max_length=400)  # a queue lock (runs planned before 0008)
    host_share: int | None = None  # a split host's slice: how many of its request slots it may hold
    url_count: int = 0
    state: str = Field(default="queued", max_length=16)
    attempt: int = 0
    requeues: int = 0
    worker: str | None = Field(default=None, max_length=200)
    job_id: int | None = Field(default=None, sa_type=BigInteger)
    checked: int = 0
    heartbeat_at: datetime | None = None  # last sign of life (or of the last state change)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = Field(default=None, sa_type=Text)


class RunFanoutRow(SQLModel, table=True):
    """Fan-in counter of a distributed run: the shard whose completion makes ``done == total`` finalizes."""

    __tablename__ = "run_fanout"
    run_id: int = Field(primary_key=True, foreign_key="run.id")
    queue: str = Field(max_length=100)
    shard_total: int = 0
    shard_done: int = 0
    shard_failed: int = 0
    only_failing: bool = False
    lease_holder: str = Field(max_length=200)  # holder of the corpus-check lease for the run's lifetime
    finalized_by: str | None = Field(default=None, max_length=200)
    # set in the transaction that follows the logging of the run's alert events: while it is
    # NULL on an ended run, a finalizer died between its commit and its log lines, and the
    # next drain (a worker's reaper, the next run's planner) emits them again
    alerts_emitted_at: datetime | None = None


class RunEventRow(SQLModel, table=True):
    """An alert event produced by a committed batch of a distributed run (outbox, emitted at fan-in).

    ``id`` is the event's stable ``event_id`` in the log (prefixed with the run), so a log
    pipeline can drop the duplicates an emit retried after a crash produces.
    """

    __tablename__ = "run_event"
    __table_args__ = (Index("ix_run_event_run", "run_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    shard_id: int
    name: str = Field(max_length=64)
    payload: str = Field(sa_type=Text)  # JSON


class SoftBaselineRow(SQLModel, table=True):
    """What a made-up URL of a host and first path segment answered when last probed (soft 404s).

    Reused while younger than ``baseline_ttl_hours``, so a rerun sends no probe; ``soft``: it
    answered 200, and ``fingerprint``/``title`` describe that "not found" page.
    """

    __tablename__ = "soft_baseline"
    host: str = Field(primary_key=True, max_length=300)
    prefix: str = Field(primary_key=True, max_length=300)
    probed_at: datetime = Field(index=True)
    url: str = Field(sa_type=Text)
    status: int
    soft: bool = False
    title: str | None = Field(default=None, sa_type=Text)
    fingerprint: str | None = Field(default=None, sa_type=Text)
