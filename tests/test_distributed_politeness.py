"""A host split over several shards keeps its per-host limit across workers, counted at the server.

The giant host's slices run at the same time on two `monitor worker` processes (two shards at
once each, so slices meet both in one process and across processes), each slice within its
share of the limit; second tries (503 once, then 200) and same-host redirect hops take the same
slots. The fixture server counts requests in flight per Host header: the peak must stay at
the limit, and exceed one slice's share (else the host was not really checked in parallel).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from monitor.config import HttpSettings
from monitor.fetch.hosts import ProcessLimits
from monitor.store.models import ResultRow, RunRow, RunShardRow
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer

ROOT = Path(__file__).resolve().parent.parent
PER_HOST = 6
GIANT, SMALL = 330, 40  # URLs on listener 0 (split in three slices, shares 2+2+2) and listener 1


def test_shares_of_one_host_in_one_process_hold_their_own_slots() -> None:
    """Two shares (3 and 1) of a host in one process: each holds at most its share at once, and
    both together their sum, while every other host keeps the process's slots."""
    limits = ProcessLimits(HttpSettings(concurrency=50, per_host_concurrency=PER_HOST))
    views = [limits.with_share("giant:1", 3), limits.with_share("giant:1", 1)]
    assert [v.limiter.policy("giant:1").concurrency for v in views] == [3, 1]
    assert views[0].limiter.policy("other:1").concurrency == PER_HOST
    live = {"all": 0, 0: 0, 1: 0}
    peak = dict(live)

    async def request(n: int) -> None:
        async with views[n].limiter.slot("giant:1"):
            for key in ("all", n):
                live[key] += 1
                peak[key] = max(peak[key], live[key])
            await asyncio.sleep(0.002)
            for key in ("all", n):
                live[key] -= 1

    async def other() -> int:
        async with views[0].limiter.slot("other:1"), views[1].limiter.slot("other:1"):
            return views[0].limiter.in_flight("other:1")  # one table for the hosts not shared

    async def main() -> int:
        await asyncio.gather(*(request(i % 2) for i in range(200)))
        return await other()

    assert asyncio.run(main()) == 2
    assert peak == {"all": 4, 0: 3, 1: 1}
    assert limits.limiter.peak("giant:1") == 3  # the process's peaks report the largest share's


def write_corpus(folder: Path, server: FixtureServer) -> int:
    """The giant host: pages, 503-once pages (a retry each) and two-hop redirects; a small host."""
    folder.mkdir(parents=True)
    n = 0
    for listener, size in ((0, GIANT), (1, SMALL)):
        for _ in range(size):
            n += 1
            path = f"/status/200?u={n}"
            if listener == 0 and n % 5 == 0:
                path = f"/flaky/1?key={n}"
            elif listener == 0 and n % 7 == 0:
                path = f"/redirect/2?u={n}"
            url = server.url(path, listener=listener)
            (folder / f"a{n:04d}.md").write_text(f'---\ntitle: "Article {n}"\nwebUrl: "{url}"\n---\n')
    return n


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    fixture = FixtureServer(latency_ms=40, listeners=2).start()
    yield fixture
    fixture.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_host_split_over_workers_never_exceeds_its_limit(server: FixtureServer, tmp_path: Path) -> None:
    urls = write_corpus(tmp_path / "corpus", server)
    with pg_schema_url() as db_url:
        config = tmp_path / "dist.toml"
        config.write_text(
            f'database_url = "{db_url}"\n'
            f'[corpus]\nroots = ["{tmp_path}/corpus"]\n'
            "[safety]\nallow_private = true\n"
            f"[http]\nconcurrency = 8\nper_host_concurrency = {PER_HOST}\n"
            "max_retries = 1\nbackoff_base = 0.01\nbackoff_max = 0.05\n"
            "[jobs]\nlock_ttl_seconds = 10\nshutdown_grace_seconds = 1\n"
            "[distributed]\nenabled = true\nshard_size = 110\nhost_split_threshold = 200\n"
            "worker_concurrency = 4\nheartbeat_seconds = 0.5\nstall_seconds = 5\n"
            '[logging]\nformat = "json"\n'
        )
        base = [sys.executable, "-m", "monitor.cli", "-c", str(config)]
        subprocess.run([*base, "db", "upgrade"], cwd=ROOT, check=True, capture_output=True, timeout=120)
        workers = [
            subprocess.Popen(
                [*base, "worker", "--concurrency", "2"],
                cwd=ROOT,
                stdout=(tmp_path / f"worker{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for i in range(2)
        ]
        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            time.sleep(1)  # both workers on the queue before the shards are, so both take slices
            server.reset()
            done = subprocess.run(
                [*base, "check", "--wait-run"], cwd=ROOT, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr[-2000:]
            with engine.connect() as conn:
                run_id = conn.execute(select(func.max(RunRow.id))).scalar_one()
                assert (
                    conn.execute(select(RunRow.state).where(RunRow.id == run_id)).scalar_one() == "finished"
                )
                slices = conn.execute(
                    select(RunShardRow.host_share, RunShardRow.worker, RunShardRow.url_count).where(
                        RunShardRow.run_id == run_id, RunShardRow.host_share.is_not(None)
                    )
                ).all()
                results = conn.execute(
                    select(func.count()).select_from(ResultRow).where(ResultRow.run_id == run_id)
                ).scalar_one()
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            for proc in workers:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            engine.dispose()
    assert results == urls
    assert sorted(s.host_share for s in slices) == [2, 2, 2] and sum(s.url_count for s in slices) == GIANT
    assert len({s.worker for s in slices}) == 2, "both workers checked slices of the giant host"
    giant = f"127.0.0.1:{server.ports[0]}"
    retried = [r for r in server.requests("/flaky/") if r.host == giant]
    hops = [r for r in server.requests("/redirect/") if r.host == giant]
    assert len(retried) > GIANT // 5 and len(hops) > GIANT // 7  # second tries and hops were sent
    peak = server.peak_by_host()[giant]
    assert peak <= PER_HOST, f"{peak} requests at once at a host limited to {PER_HOST}"
    assert peak > 2, f"peak {peak}: the slices never ran at the same time"
