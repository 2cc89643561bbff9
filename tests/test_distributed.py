"""Distributed runs: the shard planner, the migration, and real `monitor worker` processes on PostgreSQL.

The worker tests start the fixture server with four listeners (four hosts, 40 ms per answer),
queue a run with `monitor check` and let two worker subprocesses check it, then kill, stop or
freeze one of them mid-shard. Heartbeats are 0.5 s and a shard is stale after 2.5 s, so a
dead worker's shard runs again within a few seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from monitor.config import ConfigError, load_settings
from monitor.distributed.executor import ProcrastinateExecutor, executor_for
from monitor.distributed.runs import timeline
from monitor.run import shards
from monitor.run.check import RunRequest
from monitor.run.executors import LocalExecutor
from monitor.store import runs as store
from monitor.store.db import open_engine
from monitor.store.models import ArchiveCopyRow, ResultRow, RunFanoutRow, RunRow, RunShardRow, UrlRow
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer

ROOT = Path(__file__).resolve().parent.parent
HOST_SIZES = (60, 60, 60, 240)  # URLs per fixture-server listener
PER_HOST = 2
EVENT_NAMES = {
    "link.broken",
    "link.moved",
    "link.recovered",
    "link.flapping",
    "host.down",
    "image.size_mismatch",
}


# --- the planner (pure) -----------------------------------------------------------------


def test_plan_puts_every_host_in_exactly_one_shard_and_balances_load() -> None:
    """Bin-packing covers each small host once and keeps every shard near the target size."""
    counts = {f"h{i}.test": n for i, n in enumerate([90, 70, 50, 40, 30, 30, 20, 10, 5, 5])}
    planned = shards.plan(counts, shard_size=100, split_threshold=500)
    hosts = [h for s in planned for h in s.hosts]
    assert sorted(hosts) == sorted(counts) and len(hosts) == len(set(hosts))
    assert len(planned) == 4
    assert sum(s.url_count for s in planned) == sum(counts.values())
    assert max(s.url_count for s in planned) <= 100


def test_plan_starts_the_shard_that_paces_the_run_first() -> None:
    """Order is by expected time: the slices of a split host (their URLs over their share of the
    host limit) first, whatever the host names, then shards whose biggest host or size takes longest."""
    counts = {
        "a-giant.test": 900,
        "z-giant.test": 2000,
        "mid.test": 700,
        **{f"s{i}.test": 50 for i in range(8)},
    }
    planned = shards.plan(
        counts, shard_size=400, split_threshold=800, concurrency=16, per_host=8, shards_at_once=8
    )
    firsts = [(s.hosts[0], s.part) for s in planned]
    assert firsts[:4] == [("z-giant.test", p) for p in range(4)]  # 2,000 URLs over 8 slots: 250
    assert sorted(firsts[4:7]) == [("a-giant.test", p) for p in range(3)]  # 900 over 8: about 112
    assert planned[7].hosts[0] == "mid.test"  # 700 / 8 outlasts every packed shard of small hosts
    assert [(s.url_count, s.share) for s in planned[:4]] == [(500, 2)] * 4  # 16 / 8 slots a shard


def test_plan_splits_a_giant_host_into_slices_whose_shares_add_up_to_its_limit() -> None:
    """A host above the threshold becomes min(ceil(n / shard_size), limit) concurrent slices;
    their shares of the host's limit add up to the limit exactly, each at least 1."""
    planned = shards.plan(
        {"big.test": 1050, "small.test": 10}, shard_size=300, split_threshold=1000, per_host=6
    )
    big = [s for s in planned if s.hosts == ("big.test",)]
    assert sorted(s.part for s in big if s.part is not None) == [0, 1, 2, 3] and {s.parts for s in big} == {4}
    assert [(s.url_count, s.share) for s in big] == [(350, 2), (350, 2), (175, 1), (175, 1)]
    assert next(s for s in planned if s.hosts == ("small.test",)).share is None
    # a host whose limit fits in what one shard gets on a busy worker (64 / 4 = 16 slots) is not split
    assert [
        s.share
        for s in shards.plan({"big.test": 1050}, 300, 1000, concurrency=64, per_host=16, shards_at_once=4)
    ] == [None]
    assert len(shards.plan({"big.test": 1050}, 300, 1000, concurrency=64, per_host=17, shards_at_once=4)) == 2
    # a limit below the slice count caps the slices; a limit of 1 or a spaced host is never split
    capped = shards.plan({"big.test": 1050}, shard_size=300, split_threshold=1000, limits={"big.test": 2})
    assert [(s.url_count, s.share) for s in capped] == [(525, 1), (525, 1)]
    assert [s.share for s in shards.plan({"big.test": 1050}, 300, 1000, per_host=1)] == [None]
    assert [s.share for s in shards.plan({"big.test": 1050}, 300, 1000, per_host=8, spaced={"big.test"})] == [
        None
    ]
    assert all(
        sum(shards.shares(limit, parts)) == limit for limit in range(1, 70) for parts in range(1, limit + 1)
    )
    for limit in range(2, 12):  # tiny hosts too: every slice gets a URL, the sizes add up
        for count in range(2, 30):
            planned = shards.plan({"h": count}, 1, 1, per_host=limit)
            assert sum(s.url_count for s in planned) == count and min(s.url_count for s in planned) >= 1
            assert sum(s.share or limit for s in planned) == limit


# --- configuration and schema -----------------------------------------------------------


def test_timeline_splits_a_run_into_pickup_checking_and_fanin() -> None:
    """The figures `monitor runs N` and run.finalized give, from shard rows alone."""
    from types import SimpleNamespace

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    shards = [
        SimpleNamespace(started_at=at(0.5), finished_at=at(4.0)),
        SimpleNamespace(started_at=at(0.7), finished_at=at(9.5)),
        SimpleNamespace(started_at=None, finished_at=None),  # never ran (cancelled)
    ]
    assert timeline(t0, at(10.0), shards) == {
        "pickup_s": 0.5,
        "checking_s": 9.0,
        "longest_shard_s": 8.8,
        "fanin_s": 0.5,
    }
    assert timeline(t0, None, [*shards[:1], SimpleNamespace(started_at=at(1), finished_at=None)]) == {
        "pickup_s": 0.5,
        "checking_s": 3.5,
        "longest_shard_s": 3.5,
    }
    assert timeline(t0, None, shards[2:]) == {}


def test_distributed_mode_refuses_sqlite(tmp_path: Path) -> None:
    """Enabling [distributed] on SQLite fails at start with a message naming the fix."""
    settings = load_settings(
        None, {"database_url": f"sqlite:///{tmp_path}/x.db", "distributed.enabled": True}
    )
    with pytest.raises(ConfigError, match="needs a PostgreSQL database_url"):
        executor_for(settings)
    assert isinstance(executor_for(load_settings(None, {"database_url": "sqlite://"})), LocalExecutor)


def test_migrations_create_the_shard_tables_on_sqlite(tmp_path: Path) -> None:
    """Upgrading a fresh SQLite database reaches revision 0004 with the three shard tables and
    the delivery marks of alerts and reports."""
    engine = open_engine(f"sqlite:///{tmp_path}/m.db")
    tables = set(inspect(engine).get_table_names())
    assert {"run_shard", "run_fanout", "run_event"} <= tables
    assert "alerts_emitted_at" in {c["name"] for c in inspect(engine).get_columns("run_fanout")}
    assert {"reports_written_at", "roots"} <= {c["name"] for c in inspect(engine).get_columns("run")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0008c"


def test_head_revision_is_alembics_head_and_a_current_database_skips_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file-name rule for the head revision agrees with Alembic; a database at head is
    opened without running Alembic, one behind it is upgraded."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from monitor.store import db

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    assert db.head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    url = f"sqlite:///{tmp_path}/m.db"
    open_engine(url).dispose()
    calls: list[str] = []
    monkeypatch.setattr(db, "upgrade", lambda engine, revision="head": calls.append(revision))
    open_engine(url).dispose()
    assert calls == []
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    engine.dispose()
    open_engine(url).dispose()
    assert calls == ["head"]


@pytest.mark.postgres
def test_nightly_tables_have_64_bit_ids_and_sequences_on_postgres() -> None:
    """result, size_check and state_change grow by a row per URL per night: 32 bits run out."""
    with pg_schema_url() as url:
        engine = open_engine(url)
        try:
            with engine.connect() as conn:
                for table in ("result", "size_check", "state_change"):
                    column = conn.execute(
                        text(
                            "SELECT data_type FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = :t AND column_name = 'id'"
                        ),
                        {"t": table},
                    ).scalar_one()
                    sequence = conn.execute(
                        text(
                            "SELECT data_type FROM information_schema.sequences "
                            "WHERE sequence_schema = current_schema() AND sequence_name = :s"
                        ),
                        {"s": f"{table}_id_seq"},
                    ).scalar_one()
                    assert (table, column, sequence) == (table, "bigint", "bigint")
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_migrations_create_the_shard_tables_on_postgres() -> None:
    """Upgrading a fresh PostgreSQL schema reaches 0003, and the shard run/no pair is unique."""
    with pg_schema_url() as url:
        engine = open_engine(url)
        try:
            cols = {c["name"] for c in inspect(engine).get_columns("run_shard")}
            assert {"attempt", "heartbeat_at", "state", "url_lo", "url_hi", "lock"} <= cols
            uniques = inspect(engine).get_unique_constraints("run_shard")
            assert any(u["column_names"] == ["run_id", "shard_no"] for u in uniques)
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_models_and_migrations_agree(backend: str, tmp_path: Path) -> None:
    """Alembic's autogenerate finds nothing to add: every model change came with its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    def diff(url: str) -> list[Any]:
        engine = open_engine(url)
        try:
            with engine.connect() as conn:
                return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))
        finally:
            engine.dispose()

    if backend == "sqlite":
        assert diff(f"sqlite:///{tmp_path}/m.db") == []
    else:
        with pg_schema_url() as url:
            assert diff(url) == []


def test_migration_0003_never_replays_the_alerts_of_runs_that_ended_before_it(tmp_path: Path) -> None:
    """Runs that ended under 0002 count as emitted; a run still going is left for the drain."""
    from monitor.store.db import create, upgrade

    engine = create(f"sqlite:///{tmp_path}/m.db")
    upgrade(engine, "0002")
    with engine.begin() as conn:
        for run_id, state in ((1, "finished"), (2, "running")):
            conn.execute(
                text(
                    "INSERT INTO run (id, started_at, state, trigger, config_fingerprint, total_targets,"
                    " checked, counts) VALUES (:id, '2026-11-30', :state, 'cli', '', 0, 0, '{}')"
                ),
                {"id": run_id, "state": state},
            )
            conn.execute(
                text(
                    "INSERT INTO run_fanout (run_id, queue, shard_total, shard_done, shard_failed,"
                    " only_failing, lease_holder) VALUES (:id, 'q', 1, 1, 0, 0, 'x')"
                ),
                {"id": run_id},
            )
    upgrade(engine)
    with engine.connect() as conn:
        emitted = dict(conn.execute(text("SELECT run_id, alerts_emitted_at FROM run_fanout")).all())
    engine.dispose()
    assert emitted[1] is not None and emitted[2] is None


# --- real workers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts_server() -> Iterator[FixtureServer]:
    server = FixtureServer(latency_ms=40, listeners=len(HOST_SIZES)).start()
    yield server
    server.stop()


@pytest.fixture
def farm(hosts_server: FixtureServer, tmp_path: Path) -> Iterator[Farm]:
    """A corpus over four hosts, a throwaway PostgreSQL schema, and helpers to run workers on it."""
    hosts_server.reset()
    with pg_schema_url() as url:
        f = Farm(tmp_path, url, hosts_server)
        try:
            yield f
        finally:
            f.stop_all()


class Farm:
    """One test's distributed set-up: corpus, config file, worker subprocesses and their logs."""

    def __init__(self, tmp: Path, url: str, server: FixtureServer) -> None:
        self.tmp, self.url, self.server = tmp, url, server
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.urls = write_corpus(tmp / "corpus", server)
        self.config = self.write_config(url, "dist.toml", enabled=True)
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    def write_config(self, db_url: str, name: str, *, enabled: bool) -> Path:
        cfg = self.tmp / name
        cfg.write_text(
            f'database_url = "{db_url}"\n'
            f'[corpus]\nroots = ["{self.tmp}/corpus"]\n'
            "[safety]\nallow_private = true\n"
            f"[http]\nbackoff_base = 0.01\nbackoff_max = 0.05\nper_host_concurrency = {PER_HOST}\n"
            "concurrency = 8\nmax_retries = 0\n"
            "[alerts]\nalert_after = 1\nhost_down_threshold = 1000\n"
            "[jobs]\nlock_ttl_seconds = 10\nshutdown_grace_seconds = 1\n"
            f"[distributed]\nenabled = {'true' if enabled else 'false'}\nshard_size = 100\n"
            "host_split_threshold = 150\nheartbeat_seconds = 0.5\nstall_seconds = 2.5\nmax_attempts = 5\n"
            '[logging]\nformat = "json"\n'
            f'[reports]\nfolder = "{self.tmp}/reports"\nformats = ["json"]\n'
        )
        return cfg

    def monitor(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "monitor.cli", "-c", str(self.config), *args]

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker{len(self.workers)}.log"
        proc = subprocess.Popen(
            self.monitor("worker", "--concurrency", "2"),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.workers.append((proc, log))
        return proc

    def check(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.monitor("check", *extra), capture_output=True, text=True, cwd=ROOT, timeout=120
        )

    def stop_all(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        self.engine.dispose()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for _, log in self.workers:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    out.append(json.loads(line))
        return out

    def log_of(self, proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
        path = next(log for p, log in self.workers if p is proc)
        return [json.loads(x) for x in path.read_text(errors="replace").splitlines() if x.startswith("{")]

    def run_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(RunRow.id))).scalar_one())

    def wait_state(self, run_id: int, timeout: float = 60) -> str:
        """The run's final state, once its alerts are emitted too (they follow the finalizing commit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                state, emitted = conn.execute(
                    select(RunRow.state, RunFanoutRow.alerts_emitted_at)
                    .join(RunFanoutRow, RunFanoutRow.run_id == RunRow.id)
                    .where(RunRow.id == run_id)
                ).one()
            if state != "running" and emitted is not None:
                return str(state)
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} still running (or its alerts pending) after {timeout}s")

    def busy_shard(self, timeout: float = 30) -> tuple[int, int]:
        """(shard id, worker pid) of a running shard that has committed at least one batch."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(RunShardRow.id, RunShardRow.worker)
                    .where(RunShardRow.state == "running", RunShardRow.checked > 0)
                    .order_by(RunShardRow.url_count.desc())
                ).first()
            if row is not None and row.worker:
                return int(row.id), int(row.worker.rpartition(":")[2])
            time.sleep(0.05)
        raise AssertionError("no shard got going")

    def finalized(self, run_id: int) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == "run.finalized" and e.get("run_id") == run_id]

    def proc(self, pid: int) -> subprocess.Popen[bytes]:
        return next(p for p, _ in self.workers if p.pid == pid)

    def shard(self, shard_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(RunShardRow).where(RunShardRow.id == shard_id)).one()

    def assert_exactly_once(self, run_id: int, host_peak: int = PER_HOST) -> None:
        """One result per live URL, the run finalized once, per-host politeness held (at most
        ``host_peak`` requests in flight to any host)."""
        with self.engine.connect() as conn:
            results = conn.execute(
                select(func.count(), func.count(ResultRow.url_id.distinct())).where(
                    ResultRow.run_id == run_id
                )
            ).one()
            checked = conn.execute(select(RunRow.checked).where(RunRow.id == run_id)).scalar_one()
            done = conn.execute(
                select(RunFanoutRow.shard_done).where(RunFanoutRow.run_id == run_id)
            ).scalar_one()
            total = conn.execute(select(func.count()).select_from(RunShardRow)).scalar_one()
        assert tuple(results) == (len(self.urls), len(self.urls))
        assert checked == len(self.urls) and done == total
        deadline = time.monotonic() + 10  # the finalizer logs this line after its alerts
        while not (finalized := self.finalized(run_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(finalized) == 1
        assert max(self.server.peak_by_host().values()) <= host_peak


def write_corpus(folder: Path, server: FixtureServer) -> list[str]:
    """One URL per article; every 7th answers 404, every 11th is a permanent redirect."""
    folder.mkdir(parents=True)
    urls = []
    n = 0
    for listener, size in enumerate(HOST_SIZES):
        for _i in range(size):
            n += 1
            path = f"/status/200?u={n}"
            if n % 7 == 0:
                path = f"/status/404?u={n}"
            elif n % 11 == 0:
                path = f"/redirect-to/301?to=/status/200&u={n}"
            url = server.url(path, listener=listener)
            urls.append(url)
            (folder / f"a{n:04d}.md").write_text(f'---\ntitle: "Article {n}"\nwebUrl: "{url}"\n---\n')
    return urls


def comparable(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Events without their moment- and run-dependent keys, as sorted JSON, for equality across runs."""
    out = []
    for name, keys in events:
        keep = {k: v for k, v in keys.items() if k not in ("since", "run_id", "event_id")}
        out.append(json.dumps([name, keep], sort_keys=True))
    return sorted(out)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_match_the_local_executor_row_for_row(farm: Farm) -> None:
    """Two workers give every URL the verdict a local run gives it, and the same alerts."""
    import asyncio

    local_settings = load_settings(
        farm.write_config(f"sqlite:///{farm.tmp}/local.db", "local.toml", enabled=False)
    )
    local_engine = open_engine(local_settings.database_url)
    outcome = asyncio.run(LocalExecutor().start(local_settings, local_engine, RunRequest()))
    with local_engine.connect() as conn:
        local = dict(
            conn.execute(
                select(UrlRow.url, ResultRow.verdict).join(ResultRow, ResultRow.url_id == UrlRow.id)
            ).all()
        )
    local_engine.dispose()
    farm.server.reset()

    farm.start_worker()
    farm.start_worker()
    done = farm.check("--wait-run", "--format", "json")
    assert done.returncode == 2, done.stderr  # the 404s are errors
    run_id = farm.run_id()
    assert farm.wait_state(run_id) == "finished"
    with farm.engine.connect() as conn:
        remote = dict(
            conn.execute(
                select(UrlRow.url, ResultRow.verdict)
                .join(ResultRow, ResultRow.url_id == UrlRow.id)
                .where(ResultRow.run_id == run_id)
            ).all()
        )
        shard_count = conn.execute(select(func.count()).select_from(RunShardRow)).scalar_one()
    assert remote == local and len(local) == len(farm.urls)
    assert shard_count == 4  # one per host: the big host's limit, 2, fits in a shard's 8 / 4 slots
    log_keys = ("event", "level", "logger", "timestamp")
    emitted = [
        (e["event"], {k: v for k, v in e.items() if k not in log_keys})
        for e in farm.logs()
        if e.get("event") in EVENT_NAMES
    ]
    assert len(outcome.events) == 93  # 60 broken + 33 moved
    assert comparable(emitted) == comparable(outcome.events)
    ids = [keys["event_id"] for _, keys in emitted]
    assert len(set(ids)) == len(ids) == 93 and all(i.startswith(f"{run_id}:") for i in ids)
    farm.assert_exactly_once(run_id)
    # where the time went: the check's run.started and the finalizer's run.finalized, and `runs N`
    lines = done.stderr.splitlines() + done.stdout.splitlines()
    started = [json.loads(x) for x in lines if '"run.started"' in x]
    assert started and all(started[0][k] >= 0 for k in ("inventory_s", "plan_s", "enqueue_s"))
    (final,) = farm.finalized(run_id)
    assert final["pickup_s"] >= 0 and final["checking_s"] >= final["longest_shard_s"] > 0
    assert final["fanin_s"] >= 0
    shown = subprocess.run(farm.monitor("runs", str(run_id)), capture_output=True, text=True, cwd=ROOT)
    assert "timeline: first shard picked up " in shown.stdout and "(longest " in shown.stdout


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkill_mid_shard_is_rechecked_exactly_once(farm: Farm) -> None:
    """A worker killed mid-shard: the shard runs again elsewhere, with exact counts and one finalization."""
    farm.start_worker()
    farm.start_worker()
    queued = farm.check()
    assert queued.returncode == 0, queued.stderr
    run_id = farm.run_id()
    shard_id, pid = farm.busy_shard()
    farm.proc(pid).send_signal(signal.SIGKILL)
    assert farm.wait_state(run_id) == "finished"
    assert farm.shard(shard_id).attempt >= 2
    farm.assert_exactly_once(run_id)


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_hands_the_shard_back(farm: Farm) -> None:
    """SIGTERM commits what is in flight, hands the shard back and exits 0; another worker finishes it."""
    farm.start_worker()
    assert farm.check().returncode == 0
    run_id = farm.run_id()
    shard_id, pid = farm.busy_shard()
    first = farm.proc(pid)
    farm.start_worker()
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    handed = [e for e in farm.log_of(first) if e.get("event") == "shard.handed_back"]
    assert handed and {e["state"] for e in handed} == {"queued"}
    assert farm.wait_state(run_id) == "finished"
    assert farm.shard(shard_id).attempt >= 2
    farm.assert_exactly_once(run_id)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_frozen_worker_cannot_commit_after_its_shard_was_requeued(farm: Farm) -> None:
    """SIGSTOP past the stall limit, SIGCONT after the re-queue: the old owner's batch is refused."""
    farm.start_worker()
    farm.start_worker()
    assert farm.check().returncode == 0
    run_id = farm.run_id()
    for _ in range(10):  # the chosen shard may finish between the choice and the stop: choose again
        shard_id, pid = farm.busy_shard()
        frozen = farm.proc(pid)
        attempt = farm.shard(shard_id).attempt
        frozen.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        if farm.shard(shard_id).state == "running":
            break
        frozen.send_signal(signal.SIGCONT)
    else:
        pytest.fail("no running shard could be frozen")
    deadline = time.monotonic() + 60  # generous: CI runs this next to the rest of the suite
    while farm.shard(shard_id).attempt == attempt:
        assert time.monotonic() < deadline, "the stalled shard was never re-queued"
        time.sleep(0.1)
    frozen.send_signal(signal.SIGCONT)
    assert farm.wait_state(run_id) == "finished"
    time.sleep(1.5)  # let the thawed worker reach its next commit
    events = [e["event"] for e in farm.log_of(frozen)]
    assert "shard.commit_refused" in events
    # a request that had passed the ownership check (``ShardRun.gate``) when the process froze is
    # sent on SIGCONT, beside the new owner's: up to one limit's worth, once (no HTTP server can
    # be fenced); every later request of the thawed worker is refused at the gate
    farm.assert_exactly_once(run_id, host_peak=2 * PER_HOST)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_simultaneous_starts_make_exactly_one_run(farm: Farm) -> None:
    """Two `monitor check` planners racing: one run is queued, the other is refused with exit 1."""
    procs = [
        subprocess.Popen(
            farm.monitor("check"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    assert any("another check is running" in err for _, err in outs)
    with farm.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RunRow)).scalar_one() == 1


def test_procrastinate_executor_is_chosen_for_postgres() -> None:
    """With [distributed] enabled on a PostgreSQL URL the seam hands out the Procrastinate executor."""
    settings = load_settings(
        None, {"database_url": "postgresql://u@db.invalid/x", "distributed.enabled": True}
    )
    assert isinstance(executor_for(settings), ProcrastinateExecutor)


# --- alert delivery: at least once, deduplicated by event_id ----------------------------

OUTBOX = [  # what the batches of two shards stored; a.test has enough broken links for host.down
    [
        ("link.broken", {"url": "http://a.test/1", "host": "a.test", "verdict": "not_found"}),
        ("link.moved", {"url": "http://b.test/m", "final_url": "http://b.test/n"}),
        ("link.broken", {"url": "http://b.test/1", "host": "b.test", "verdict": "not_found"}),
    ],
    [("link.broken", {"url": "http://a.test/2", "host": "a.test", "verdict": "not_found"})],
]


def completed_run(farm: Farm, trigger: str = "cli") -> tuple[Any, Any, int]:
    """(settings, engine, run id) of a run whose shards all committed OUTBOX and completed, not finalized."""
    from monitor.distributed import ledger, runs
    from monitor.run.inventory import sync_inventory

    config = farm.config.read_text().replace("host_down_threshold = 1000", "host_down_threshold = 2")
    farm.config.write_text(config)  # workers started later group as this process does
    settings = load_settings(farm.config)
    engine = open_engine(farm.url)
    sync_inventory(engine, settings.corpus, None)
    run_id, planned, _ = runs.plan_run(settings, engine, runs.run_holder(), trigger, False)
    for n, shard_id in enumerate(planned):
        claim = ledger.claim(engine, shard_id, "test:1", None)
        assert claim is not None
        with engine.begin() as conn:
            ledger.fence(conn, shard_id, claim.attempt)
            ledger.record_batch(conn, shard_id, run_id, OUTBOX[n] if n < len(OUTBOX) else [], 0)
        ledger.complete(engine, shard_id, run_id, claim.attempt)
    return settings, engine, run_id


def alert_lines(entries: list[dict[str, Any]], run_id: int) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") in EVENT_NAMES and e.get("run_id") == run_id]


def expected_alerts() -> list[str]:
    """OUTBOX in commit order, grouped exactly as a local run groups it (threshold 2)."""
    from monitor import alerts

    raw = [event for batch in OUTBOX for event in batch]
    return [json.dumps([name, keys], sort_keys=True) for name, keys in alerts.group_host_down(raw, 2)]


def without_ids(lines: list[dict[str, Any]]) -> list[str]:
    drop = ("event", "event_id", "run_id", "level", "logger", "timestamp", "log_level")
    return [
        json.dumps([e["event"], {k: v for k, v in e.items() if k not in drop}], sort_keys=True) for e in lines
    ]


@pytest.mark.postgres
def test_alerts_lost_between_the_finalizing_commit_and_logging_are_drained_once(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finalizer that dies after its commit emits nothing; a worker's reaper emits every event
    once with an event_id, a drain racing an emitter skips the run, and a second drain is silent."""
    import structlog.testing

    from monitor.distributed import runs

    settings, engine, run_id = completed_run(farm)

    def crash(*_: Any) -> None:
        raise RuntimeError("killed between the commit and the log lines")

    monkeypatch.setattr(runs, "emit_alerts", crash)
    with structlog.testing.capture_logs() as first:
        outcome = runs.finalize(settings, engine, run_id)
    monkeypatch.undo()
    assert outcome is not None and outcome.state == "finished"
    assert not alert_lines(first, run_id) and [e["event"] for e in first].count("run.alerts_deferred") == 1
    with farm.engine.connect() as conn:
        assert conn.execute(select(RunFanoutRow.alerts_emitted_at)).scalar_one() is None

    with farm.engine.connect() as emitter, structlog.testing.capture_logs() as racing:
        emitter.execute(select(RunFanoutRow.run_id).with_for_update())  # someone is emitting this run
        assert runs.deliver_pending(settings, engine) == 0
        emitter.rollback()  # ... and died before marking it
    assert not alert_lines(racing, run_id)

    worker = farm.start_worker()  # its first reaper pass drains the run
    deadline = time.monotonic() + 30
    while not any(e.get("event") == "run.alerts_emitted" for e in farm.log_of(worker)):
        assert time.monotonic() < deadline, "no worker emitted the pending alerts"
        time.sleep(0.1)
    emitted = alert_lines(farm.log_of(worker), run_id)
    ids = [e["event_id"] for e in emitted]
    assert sorted(without_ids(emitted)) == sorted(expected_alerts())
    assert len(set(ids)) == len(ids) == 3 and f"{run_id}:host.down:a.test" in ids

    with structlog.testing.capture_logs() as again:
        assert runs.deliver_pending(settings, engine) == 0
    assert not alert_lines(again, run_id)
    engine.dispose()


@pytest.mark.postgres
def test_alerts_logged_but_not_marked_are_emitted_again_under_the_same_event_ids(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the log lines but before the mark commits repeats the events, never loses
    them, and the repeat carries the same event_ids so a log pipeline can drop it."""
    import structlog.testing

    from monitor.distributed import ledger, runs

    settings, engine, run_id = completed_run(farm)

    def crash(*_: Any) -> None:
        raise RuntimeError("killed after logging, before the commit")

    monkeypatch.setattr(ledger, "mark_alerts_emitted", crash)
    with structlog.testing.capture_logs() as first:
        runs.finalize(settings, engine, run_id)
    monkeypatch.undo()
    with structlog.testing.capture_logs() as second:
        assert runs.deliver_pending(settings, engine) == 3
        assert runs.deliver_pending(settings, engine) == 0
    once, twice = alert_lines(first, run_id), alert_lines(second, run_id)
    assert sorted(without_ids(once)) == sorted(expected_alerts())
    assert [e["event_id"] for e in once] == [e["event_id"] for e in twice]
    assert without_ids(once) == without_ids(twice)
    engine.dispose()


@pytest.mark.postgres
def test_reports_lost_with_a_finalizer_that_died_are_written_by_the_next_drain(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled run's finalizer that dies after its commit, before the report files, leaves
    the run marked unwritten; the next drain (a worker's reaper, the next planner) writes them."""
    from monitor.distributed import runs

    settings, engine, run_id = completed_run(farm, trigger="schedule")

    def crash(*_: Any) -> None:
        raise RuntimeError("killed before the report files")

    monkeypatch.setattr(runs, "write_run_reports", crash)
    with pytest.raises(RuntimeError):
        runs.finalize(settings, engine, run_id)
    monkeypatch.undo()
    assert store.unwritten_reports(engine) == [run_id]
    assert not (farm.tmp / "reports").exists()

    runs.deliver_pending(settings, engine)
    assert store.unwritten_reports(engine) == []
    latest = json.loads((farm.tmp / "reports" / "latest.json").read_text(encoding="utf-8"))
    assert latest["run"]["id"] == run_id and latest["run"]["state"] == "finished"
    engine.dispose()


# --- abandoning a run -------------------------------------------------------------------


def results_of(farm: Farm, run_id: int) -> int:
    with farm.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(ResultRow.run_id == run_id)).scalar_one())


def json_lines(text_out: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text_out.splitlines() if x.startswith("{")]


@pytest.mark.postgres
@pytest.mark.slow
def test_fail_abandons_a_running_run_and_the_next_run_starts(farm: Farm) -> None:
    """`monitor runs RUN_ID --fail` mid-run: the run is failed with the reason, its unfinished
    shards cancelled and queued jobs dropped, the worker stops and commits nothing more, a
    second --fail exits 1, the next run starts and is worked on, and the abandoned run's
    committed alerts are emitted exactly once."""
    worker = farm.start_worker()
    assert farm.check().returncode == 0
    run_id = farm.run_id()
    farm.busy_shard()
    fail = farm.monitor("runs", str(run_id), "--fail", "--reason", "operator gave up")
    failed = subprocess.run(fail, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert failed.returncode == 0, failed.stderr
    committed = results_of(farm, run_id)
    abandoned = [e for e in json_lines(failed.stderr) if e.get("event") == "run.abandoned"]
    assert len(abandoned) == 1 and abandoned[0]["shards_cancelled"] >= 1
    assert abandoned[0]["error"] == "operator gave up"
    with farm.engine.connect() as conn:
        run = conn.execute(select(RunRow).where(RunRow.id == run_id)).one()
        states = set(conn.execute(select(RunShardRow.state).where(RunShardRow.run_id == run_id)).scalars())
        leases = conn.execute(text("SELECT count(*) FROM lease")).scalar_one()
        waiting = conn.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
        ).scalar_one()
    assert (run.state, run.error) == ("failed", "operator gave up")
    assert "cancelled" in states and states <= {"done", "cancelled"}
    assert leases == 0 and waiting == 0
    with farm.engine.connect() as conn:
        cut = set(
            conn.execute(
                select(RunShardRow.id).where(
                    RunShardRow.run_id == run_id,
                    RunShardRow.state == "cancelled",
                    RunShardRow.started_at.is_not(None),
                )
            ).scalars()
        )
    assert cut, "no shard was running when the run was failed"

    ends: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not cut <= {e["shard_id"] for e in ends}:  # lost, or its completion refused
        assert time.monotonic() < deadline, "the worker went on with a cancelled shard"
        time.sleep(0.1)
        ends = [e for e in farm.log_of(worker) if e.get("event") in ("shard.lost", "shard.done")]
    assert not [e for e in ends if e["shard_id"] in cut and e.get("counted")]
    time.sleep(1.0)  # past a heartbeat: any batch still in flight would have tried to commit
    assert results_of(farm, run_id) == committed

    again = subprocess.Popen(fail, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    nxt = farm.check()  # meanwhile: the lock is free for the next run
    _, again_err = again.communicate(timeout=60)
    assert again.returncode == 1 and "is not running (it is failed)" in again_err
    assert nxt.returncode == 0, nxt.stderr
    next_id = farm.run_id()
    assert next_id != run_id
    farm.busy_shard()  # the same worker gets going on the next run

    with farm.engine.connect() as conn:
        outbox = conn.execute(text("SELECT count(*) FROM run_event WHERE run_id = :r"), {"r": run_id})
        stored = int(outbox.scalar_one())
    logged = alert_lines(farm.logs() + json_lines(nxt.stderr), run_id)
    ids = [e["event_id"] for e in logged]
    assert stored > 0 and len(ids) == len(set(ids)) == stored


@pytest.mark.postgres
@pytest.mark.slow
def test_the_finalizer_looks_up_archived_copies_before_the_run_closes(farm: Farm) -> None:
    """A distributed run's dead pages get their archived copies (cached on PostgreSQL) before the
    run closes, so the `check --wait-run` report shows them."""
    with farm.config.open("a") as cfg:
        endpoint = farm.server.url("")
        cfg.write(
            f'[archive]\nenabled = true\nendpoint = "{endpoint}"\nrate_per_s = 100.0\nconcurrency = 4\n'
        )
    farm.start_worker()
    done = farm.check("--wait-run", "--format", "json")
    assert done.returncode == 2, done.stderr
    dead = {url for url in farm.urls if "/status/404" in url}
    asked = {parse_qs(urlsplit(seen.target).query)["url"][0] for seen in farm.server.requests("/wayback/")}
    assert asked == dead
    listed = json.loads(done.stdout)["broken"]["urls"]
    assert listed and all(u["archived"]["url"].endswith(u["url"]) for u in listed)
    with farm.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ArchiveCopyRow)).scalar_one() == len(dead)
