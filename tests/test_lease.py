"""Database leases on SQLite and PostgreSQL: exclusion, expiry, renewal, takeover, races."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from monitor.store import lease
from monitor.store.db import create, open_engine
from monitor.store.lease import LeaseBusy, acquire, hold, hold_corpus_check, release, renew
from monitor.store.models import RunRow
from tests.pg_schema import pg_schema_url

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/lease.db"
        open_engine(url).dispose()
        yield url
        return
    with pg_schema_url() as url:
        open_engine(url).dispose()
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the migrated database."""
    eng = create(db_url)
    yield eng
    eng.dispose()


def test_first_caller_wins_and_others_are_refused(engine: Engine) -> None:
    """A free lease goes to the first caller; a second holder is refused while it is valid."""
    assert acquire(engine, "x", "a:1", 60, now=NOW)
    assert not acquire(engine, "x", "b:2", 60, now=NOW + timedelta(seconds=59))
    assert lease.current(engine, "x") is not None and lease.current(engine, "x")[0] == "a:1"  # type: ignore[index]


def test_not_reentrant(engine: Engine) -> None:
    """The holder itself cannot take the lease twice, so two jobs of one process never overlap."""
    assert acquire(engine, "x", "a:1", 60, now=NOW)
    assert not acquire(engine, "x", "a:1", 60, now=NOW)


def test_expired_lease_is_taken_over(engine: Engine) -> None:
    """Once the TTL has passed without renewal another holder gets it, and the old one cannot renew."""
    assert acquire(engine, "x", "a:1", 60, now=NOW)
    assert acquire(engine, "x", "b:2", 60, now=NOW + timedelta(seconds=61))
    assert not renew(engine, "x", "a:1", 60, now=NOW + timedelta(seconds=62))
    assert renew(engine, "x", "b:2", 60, now=NOW + timedelta(seconds=62))


def test_renewal_keeps_others_out(engine: Engine) -> None:
    """Renewing pushes the expiry out, so a caller after the original TTL is still refused."""
    assert acquire(engine, "x", "a:1", 60, now=NOW)
    assert renew(engine, "x", "a:1", 60, now=NOW + timedelta(seconds=50))
    assert not acquire(engine, "x", "b:2", 60, now=NOW + timedelta(seconds=100))


def test_release_only_by_holder(engine: Engine) -> None:
    """A stranger's release leaves the lease in place; the holder's frees it at once."""
    assert acquire(engine, "x", "a:1", 60, now=NOW)
    release(engine, "x", "b:2")
    assert not acquire(engine, "x", "b:2", 60, now=NOW)
    release(engine, "x", "a:1")
    assert acquire(engine, "x", "b:2", 60, now=NOW)


def test_dead_holder_on_this_host_is_taken_over(engine: Engine) -> None:
    """A lease whose holder process on this host has exited is free before its TTL runs out."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = f"{socket.gethostname()}:{int(proc.stdout)}"
    assert acquire(engine, "x", dead, 3600)
    assert acquire(engine, "x", "b:2", 60)
    assert lease.current(engine, "x")[0] == "b:2"  # type: ignore[index]


async def test_hold_raises_busy_with_holder_and_expiry(engine: Engine) -> None:
    """A busy lease raises LeaseBusy naming the holder and the expiry time."""
    assert acquire(engine, "corpus-check", "otherhost:42", 600)
    with pytest.raises(LeaseBusy) as info:
        async with hold(engine, "corpus-check", 60):
            pytest.fail("entered a busy lease")
    assert info.value.holder == "otherhost:42"
    assert "holder otherhost:42" in str(info.value) and "expires at 20" in str(info.value)


async def test_hold_waits_for_release(engine: Engine) -> None:
    """With ``wait`` a caller gets the lease as soon as the holder lets go."""
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with hold(engine, "x", 60, holder="first:1"):
            entered.set()
            await leave.wait()

    task = asyncio.create_task(first())
    await entered.wait()
    asyncio.get_running_loop().call_later(0.3, leave.set)
    async with hold(engine, "x", 60, wait=5.0, holder="second:2") as got:
        assert got.holder == "second:2"
    await task
    assert lease.current(engine, "x") is None


async def test_hold_wait_times_out(engine: Engine) -> None:
    """A bounded wait gives up with LeaseBusy after roughly that many seconds."""
    assert acquire(engine, "x", "otherhost:42", 600)
    started = asyncio.get_running_loop().time()
    with pytest.raises(LeaseBusy):
        async with hold(engine, "x", 60, wait=0.6):
            pytest.fail("entered a busy lease")
    assert 0.3 <= asyncio.get_running_loop().time() - started < 3


async def test_hold_renews_in_background(engine: Engine) -> None:
    """While the body runs the expiry keeps moving forward, so a long job never loses its lease."""
    async with hold(engine, "x", 0.6, holder="a:1"):
        first = lease.current(engine, "x")[1]  # type: ignore[index]
        await asyncio.sleep(0.5)
        later = lease.current(engine, "x")[1]  # type: ignore[index]
        assert later > first
        assert not acquire(engine, "x", "b:2", 60)


async def test_hold_sets_lost_when_taken_over(engine: Engine) -> None:
    """If another holder takes the lease (after a stall), the next renewal reports it lost."""
    async with hold(engine, "x", 0.3, holder="a:1") as held:
        release(engine, "x", "a:1")
        assert acquire(engine, "x", "b:2", 60)
        await asyncio.wait_for(held.lost.wait(), 2)
    assert lease.current(engine, "x")[0] == "b:2"  # type: ignore[index]


async def test_corpus_check_marks_orphaned_runs_interrupted(engine: Engine) -> None:
    """Taking the corpus-check lease marks runs left 'running' by a dead check as interrupted."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(RunRow.__table__).values(started_at=now, heartbeat_at=now, state="running", holder="x:1")
        )
    async with hold_corpus_check(engine, 60):
        with engine.connect() as conn:
            states = conn.execute(select(RunRow.__table__.c.state)).scalars().all()
    assert states == ["interrupted"]


def _race(url: str, barrier: object, out: object, holder: str) -> None:
    eng = create(url)
    with eng.connect():
        pass  # connect before the start line so all contenders hit the database together
    barrier.wait()  # type: ignore[attr-defined]
    out.put((holder, acquire(eng, "race", holder, 60)))  # type: ignore[attr-defined]
    eng.dispose()


@pytest.mark.parametrize("preset", ["absent", "expired"])
def test_racing_processes_exactly_one_wins(db_url: str, preset: str) -> None:
    """Processes released at the same instant: exactly one gets a free (or expired) lease, every round."""
    ctx = multiprocessing.get_context("fork")
    eng = create(db_url)
    try:
        for round_no in range(3):
            with eng.begin() as conn:
                conn.execute(lease.LEASES.delete())
            if preset == "expired":
                assert acquire(eng, "race", "gone:1", 1, now=datetime.now(UTC) - timedelta(hours=1))
            barrier, out = ctx.Barrier(5), ctx.Queue()
            procs = [
                ctx.Process(target=_race, args=(db_url, barrier, out, f"p{round_no}:{i}")) for i in range(5)
            ]
            for proc in procs:
                proc.start()
            got = [out.get(timeout=30) for _ in procs]
            for proc in procs:
                proc.join(10)
            winners = [holder for holder, won in got if won]
            assert len(winners) == 1, got
            assert lease.current(eng, "race")[0] == winners[0]  # type: ignore[index]
    finally:
        eng.dispose()
