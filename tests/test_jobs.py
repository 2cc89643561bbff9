"""Scheduled jobs: job functions, the scheduler daemon, pruning, the corpus-check lock across
processes, and SIGTERM during a check — against the fixture server and real databases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, func, insert, select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from jobs import prune as prune_mod
from jobs.nightly import nightly_check
from jobs.recheck import recheck_failing
from jobs.runner import execute
from jobs.scheduler import JobSpec, build_scheduler, describe_jobs, job_specs, serve, sync_jobs
from monitor.cli import app
from monitor.config import PruneJob, Settings, load_settings
from monitor.run.check import RunRequest, run_check
from monitor.store import plan as store_plan
from monitor.store import runs as store_runs
from monitor.store.db import open_engine
from monitor.store.lease import CORPUS_CHECK, LeaseBusy, acquire
from monitor.store.models import (
    ArticleRow,
    LeaseRow,
    OccurrenceRow,
    ResultRow,
    RollupRow,
    RunRow,
    SizeCheckRow,
    StateChangeRow,
    UrlRow,
)
from monitor.types import Role
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer

RUN, RES, URL, SC = RunRow.__table__, ResultRow.__table__, UrlRow.__table__, SizeCheckRow.__table__
CLI = [sys.executable, "-c", "from monitor.cli import main; main()"]


# --- helpers ---------------------------------------------------------------------------------


def write_article(corpus: Path, name: str, urls: list[str]) -> None:
    """An article whose webUrl is the first URL and whose body links to the rest."""
    body = "\n".join(f"See [link {i}]({u})." for i, u in enumerate(urls[1:]))
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / f"{name}.md").write_text(
        f'---\ntitle: "{name}"\nwebUrl: "{urls[0]}"\n---\n{body}\n', encoding="utf-8"
    )


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """A config for a corpus in tmp_path/corpus, a SQLite database and reports in tmp_path."""
    path = tmp_path / "monitor.toml"
    path.write_text(
        f"""
database_url = "sqlite:///{tmp_path}/m.db"
[corpus]
roots = ["{tmp_path}/corpus"]
[safety]
allow_private = true
[http]
max_retries = 0
total_timeout = 10.0
[logging]
level = "warning"
[reports]
folder = "{tmp_path}/reports"
formats = ["html", "json"]
{extra}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Callable[..., tuple[Settings, Engine]]]:
    """Build settings (with optional TOML extras and overrides) and a migrated engine; disposed after."""
    engines: list[Engine] = []

    def make(extra: str = "", **overrides: Any) -> tuple[Settings, Engine]:
        settings = load_settings(write_config(tmp_path, extra), overrides)
        engine = open_engine(settings.database_url)
        engines.append(engine)
        return settings, engine

    yield make
    for engine in engines:
        engine.dispose()


def rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``cond`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.05)


def runs(engine: Engine) -> list[Any]:
    return rows(engine, select(RUN.c.id, RUN.c.state, RUN.c.trigger).order_by(RUN.c.id))


# --- job functions ---------------------------------------------------------------------------


async def test_nightly_check_writes_run_reports_and_latest(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """The nightly job runs a 'schedule' check, then writes each format for the run and as latest.*."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?a"), server.url("/status/404?a")])
    settings, engine = setup()
    outcome = await nightly_check(settings, engine, asyncio.Event())
    assert (outcome.state, outcome.checked) == ("finished", 2)
    assert runs(engine) == [(outcome.run_id, "finished", "schedule")]
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    stem = f"report-{outcome.run_id}-{day}"
    assert names == sorted([f"{stem}.html", f"{stem}.json", "latest.html", "latest.json"])
    latest = (tmp_path / "reports" / "latest.json").read_text(encoding="utf-8")
    assert latest == (tmp_path / "reports" / f"{stem}.json").read_text(encoding="utf-8")
    assert json.loads(latest)["run"]["id"] == outcome.run_id


async def test_reports_a_dead_writer_left_are_written_by_the_next_nightly_job(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """A scheduled run that finished but whose report writer died (here: never ran) or failed (an
    unwritable folder) is caught up by the next nightly job; latest.* ends on the newest run."""
    from reports.files import write_pending_reports

    write_article(tmp_path / "corpus", "a", [server.url("/status/200?late")])
    settings, engine = setup()
    dead = await run_check(settings, engine, RunRequest(trigger="schedule"))  # finished; its writer "died"
    assert store_runs.unwritten_reports(engine) == [dead.run_id]
    (tmp_path / "reports").write_text("not a folder")  # the next attempt fails: stays pending
    with capture_logs() as logs:
        assert write_pending_reports(engine, settings.reports, hold_off=600) == 0
        assert write_pending_reports(engine, settings.reports, hold_off=600) == 0  # held off: not retried
    assert [e["run_id"] for e in logs if e["event"] == "reports.failed"] == [dead.run_id]
    assert store_runs.unwritten_reports(engine) == [dead.run_id]
    (tmp_path / "reports").unlink()

    outcome = await nightly_check(settings, engine, asyncio.Event())
    assert store_runs.unwritten_reports(engine) == []
    reports = tmp_path / "reports"
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for run_id in (dead.run_id, outcome.run_id):
        assert json.loads((reports / f"report-{run_id}-{day}.json").read_text())["run"]["id"] == run_id
    assert json.loads((reports / "latest.json").read_text())["run"]["id"] == outcome.run_id


async def test_a_late_report_leaves_latest_on_the_newest_run(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """Catching up an older run's report writes its own files but not latest.*."""
    from reports.files import write_pending_reports

    write_article(tmp_path / "corpus", "a", [server.url("/status/200?order")])
    settings, engine = setup()
    older = await run_check(settings, engine, RunRequest(trigger="schedule"))
    newer = await nightly_check(settings, engine, asyncio.Event())  # catches up `older` first
    assert store_runs.unwritten_reports(engine) == []
    with engine.begin() as conn:  # as if `older`'s writer had died after `newer` wrote its files
        conn.execute(RUN.update().where(RUN.c.id == older.run_id).values(reports_written_at=None))
    (tmp_path / "reports" / "latest.json").unlink()
    (tmp_path / "reports" / "latest.html").unlink()
    assert write_pending_reports(engine, settings.reports) == 1
    assert not (tmp_path / "reports" / "latest.json").exists()
    assert newer.run_id > older.run_id


async def test_nightly_check_refuses_while_another_check_holds_the_lock(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """With the corpus-check lease held elsewhere the job raises LeaseBusy and creates no run."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?b")])
    settings, engine = setup()
    assert acquire(engine, CORPUS_CHECK, "otherhost:7", 600)
    with pytest.raises(LeaseBusy):
        await nightly_check(settings, engine, asyncio.Event())
    assert runs(engine) == []
    with capture_logs() as logs:
        result = await execute("nightly_check", settings, engine, asyncio.Event())
    assert result.status == "busy"
    assert [e["event"] for e in logs] == ["job.started", "job.skipped"]
    assert "otherhost:7" in logs[1]["reason"]


async def test_recheck_touches_only_failing_urls(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """After a full check, the recheck job requests exactly the URLs that were failing, nothing else."""
    good = [f"/status/200?g={i}" for i in range(4)]
    bad = ["/status/404?b=1", "/status/500?b=2"]
    write_article(tmp_path / "corpus", "a", [server.url(p) for p in good + bad])
    settings, engine = setup()
    await nightly_check(settings, engine, asyncio.Event())
    server.reset()
    outcome = await recheck_failing(settings, engine, asyncio.Event())
    assert (outcome.state, outcome.checked) == ("finished", 2)
    assert {seen.target for seen in server.requests()} == set(bad)
    assert [r.trigger for r in runs(engine)] == ["schedule", "recheck"]


async def test_recheck_skips_when_nothing_is_failing(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """With no failing URL the recheck job logs job.skipped with its reason and starts no run."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?s=1")])
    settings, engine = setup()
    await nightly_check(settings, engine, asyncio.Event())
    server.reset()
    with capture_logs() as logs:
        result = await execute("recheck_failing", settings, engine, asyncio.Event())
    assert result.status == "skipped"
    assert {"event": "job.skipped", "job": "recheck_failing", "reason": "no URL is failing"}.items() <= logs[
        -1
    ].items()
    assert len(runs(engine)) == 1 and server.requests() == []


async def test_failing_job_is_logged_not_raised(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """A job that raises (here: a bad report file pattern) ends as job.failed with the error."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?f=1")])
    settings, engine = setup('file_pattern = "report-{nope}"')
    with capture_logs() as logs:
        result = await execute("nightly_check", settings, engine, asyncio.Event())
    assert result.status == "failed" and "nope" in result.detail
    failed = [e for e in logs if e["event"] == "job.failed"]
    assert failed and failed[0]["job"] == "nightly_check" and "duration_s" in failed[0]


# --- pruning ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated engine on SQLite or on a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path}/p.db")
        yield engine
        engine.dispose()
        return
    with pg_schema_url() as url:
        engine = open_engine(url)
        yield engine
        engine.dispose()


def _history(engine: Engine, now: datetime) -> dict[str, int]:
    """Two old runs (40 and 39 days ago, 150 results each) and a recent one, with size checks."""
    with engine.begin() as conn:
        art = conn.execute(
            insert(ArticleRow.__table__).values(path="a.md", first_seen=now, last_seen=now)
        ).inserted_primary_key[0]
        url_ids = [
            conn.execute(
                insert(URL).values(
                    url=f"http://x/{i}", host="x", kind="image", first_seen=now, last_verdict="ok"
                )
            ).inserted_primary_key[0]
            for i in range(150)
        ]
        occ = conn.execute(
            insert(OccurrenceRow.__table__).values(
                article_id=art, url_id=url_ids[0], raw_url="http://x/0", location="images[0]", role="image"
            )
        ).inserted_primary_key[0]
        run_ids = []
        for age, verdicts in ((40, ("ok", "broken")), (39, ("ok", "timeout")), (0, ("ok", "ok"))):
            at = now - timedelta(days=age)
            run_id = conn.execute(insert(RUN).values(started_at=at, state="finished")).inserted_primary_key[0]
            run_ids.append(run_id)
            conn.execute(
                insert(RES),
                [
                    dict(
                        run_id=run_id,
                        url_id=u,
                        checked_at=at,
                        verdict=verdicts[i % 2],
                        severity="x",
                        reason="",
                    )
                    for i, u in enumerate(url_ids)
                ],
            )
            conn.execute(
                insert(SC).values(run_id=run_id, occurrence_id=occ, url_id=url_ids[0], verdict="match")
            )
        # an existing rollup row for the oldest day must grow, not be replaced
        conn.execute(
            insert(RollupRow.__table__).values(day=(now - timedelta(days=40)).date(), verdict="ok", count=5)
        )
    return {"urls": len(url_ids), "recent_run": run_ids[2]}


def test_prune_rolls_up_old_rows_and_keeps_state(any_engine: Engine) -> None:
    """Old result and size-check rows go in batches into rollup day/verdict counts; urls and runs stay."""
    now = datetime.now(UTC)
    made = _history(any_engine, now)
    outcome = prune_mod.prune(any_engine, PruneJob(retention_days=30, batch_size=100), now=now)
    assert (outcome.results, outcome.size_checks, outcome.batches) == (300, 2, 4)
    d40, d39 = (now - timedelta(days=40)).date(), (now - timedelta(days=39)).date()
    rollup = {(d, v): n for d, v, n in rows(any_engine, select(RollupRow.__table__))}
    assert rollup == {
        (d40, "ok"): 5 + 75,
        (d40, "broken"): 75,
        (d39, "ok"): 75,
        (d39, "timeout"): 75,
        (d40, "size:match"): 1,
        (d39, "size:match"): 1,
    }
    left = rows(any_engine, select(RES.c.run_id, func.count()).group_by(RES.c.run_id))
    assert left == [(made["recent_run"], made["urls"])]
    assert rows(any_engine, select(SC.c.run_id)) == [(made["recent_run"],)]
    assert rows(any_engine, select(func.count()).select_from(RUN)) == [(3,)]
    assert rows(any_engine, select(func.count()).select_from(URL).where(URL.c.last_verdict == "ok")) == [
        (made["urls"],)
    ]
    again = prune_mod.prune(any_engine, PruneJob(retention_days=30, batch_size=100), now=now)
    assert (again.results, again.size_checks) == (0, 0)
    assert {(d, v): n for d, v, n in rows(any_engine, select(RollupRow.__table__))} == rollup


def test_prune_stops_between_batches(tmp_path: Path) -> None:
    """A stop request ends pruning after the batch in hand; the rollup matches exactly what was deleted."""
    engine = open_engine(f"sqlite:///{tmp_path}/p.db")
    now = datetime.now(UTC)
    _history(engine, now)
    calls = iter([False, True])
    outcome = prune_mod.prune(
        engine, PruneJob(retention_days=30, batch_size=100), now=now, should_stop=lambda: next(calls, True)
    )
    assert (outcome.results, outcome.stopped) == (100, True)
    rolled = rows(engine, select(func.sum(RollupRow.__table__.c.count)))[0][0]
    assert rolled == 5 + 100
    assert rows(engine, select(func.count()).select_from(RES)) == [(350,)]
    engine.dispose()


# --- adaptive freshness ----------------------------------------------------------------------


def test_freshness_skips_only_recently_checked_healthy_urls(any_engine: Engine) -> None:
    """With image = 7 days, only healthy URLs seen solely as images and checked within a week are skipped."""
    now = datetime.now(UTC)
    cases = {  # name: (roles, last_verdict, checked days ago)
        "fresh_image": (["image"], "ok", 2),
        "old_image": (["image"], "ok", 10),
        "failing_image": (["image"], "broken", 1),
        "fresh_web": (["web"], "ok", 1),
        "image_and_web": (["image", "web"], "ok", 1),
        "never_checked": (["image"], None, None),
    }
    ids = {}
    with any_engine.begin() as conn:
        art = conn.execute(
            insert(ArticleRow.__table__).values(path="a.md", first_seen=now, last_seen=now)
        ).inserted_primary_key[0]
        for name, (roles, verdict, age) in cases.items():
            ids[name] = conn.execute(
                insert(URL).values(
                    url=f"http://x/{name}",
                    host="x",
                    kind="image",
                    first_seen=now,
                    last_verdict=verdict,
                    last_checked=None if age is None else now - timedelta(days=age),
                )
            ).inserted_primary_key[0]
            for role in roles:
                conn.execute(
                    insert(OccurrenceRow.__table__).values(
                        article_id=art, url_id=ids[name], raw_url="u", location=role, role=role
                    )
                )
    cutoffs = store_plan.freshness_cutoffs({Role.IMAGE: 7}, now)
    with any_engine.connect() as conn:
        planned = store_plan.plan_page(conn, run_id=0, after_id=0, limit=100, stale_before=cutoffs)
        everything = store_plan.plan_page(conn, run_id=0, after_id=0, limit=100)
    assert {p.url_id for p in planned} == {ids[n] for n in cases if n != "fresh_image"}
    assert len(everything) == len(cases)
    assert store_plan.count_plan(any_engine, run_id=0, stale_before=cutoffs) == len(cases) - 1


# --- the scheduler ---------------------------------------------------------------------------


async def test_scheduled_checks_make_runs_and_state_transitions(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """Two fires of a fast nightly trigger give two 'schedule' runs; a dead link turns broken on the 2nd."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?t=1"), server.url("/status/404?t=2")])
    settings, engine = setup()
    specs = [JobSpec("nightly_check", True, IntervalTrigger(seconds=1, timezone=UTC), "every 1 s")]
    shutdown = asyncio.Event()
    daemon = asyncio.create_task(
        serve(settings, engine, specs=specs, shutdown=shutdown, install_signals=False)
    )
    await until(lambda: sum(r.state == "finished" for r in runs(engine)) >= 2)
    shutdown.set()
    assert await asyncio.wait_for(daemon, 20) == 0
    done = [r for r in runs(engine) if r.state == "finished"]
    assert [r.trigger for r in done[:2]] == ["schedule", "schedule"]
    dead = rows(
        engine,
        select(URL.c.id, URL.c.alert_state, URL.c.consecutive_failures).where(
            URL.c.url.like("%/status/404%")
        ),
    )[0]
    assert dead.alert_state == "broken" and dead.consecutive_failures >= 2
    changes = rows(
        engine, select(StateChangeRow.__table__).where(StateChangeRow.__table__.c.url_id == dead.id)
    )
    assert [(c.run_id, c.from_state, c.to_state) for c in changes] == [(done[1].id, "ok", "broken")]
    live = rows(
        engine, select(URL.c.alert_state, URL.c.consecutive_successes).where(URL.c.url.like("%/status/200%"))
    )
    assert live[0].alert_state == "ok" and live[0].consecutive_successes >= 2


async def _store_missed_job(settings: Settings, engine: Engine, spec: JobSpec, missed_by: timedelta) -> None:
    """Put ``spec`` into the job store as a daemon would have left it, due ``missed_by`` ago."""
    scheduler = build_scheduler(settings, engine)
    scheduler.start(paused=True)
    sync_jobs(scheduler, [spec])
    scheduler.modify_job(spec.name, next_run_time=datetime.now(UTC) - missed_by)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)


def _hourly_far_from_now(name: str) -> JobSpec:
    """An hourly cron whose next fire is about 30 minutes away, so only a missed run can fire in a test."""
    minute = (datetime.now(UTC).minute + 30) % 60
    return JobSpec(
        name, True, CronTrigger.from_crontab(f"{minute} * * * *", timezone="UTC"), f"cron {minute}"
    )


async def test_missed_runs_after_downtime_fire_once(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """A nightly job due five fires ago runs exactly once on start (coalesced), then waits for its time."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?m=1")])
    settings, engine = setup("[jobs]\nmisfire_grace_seconds = 7200")
    spec = _hourly_far_from_now("nightly_check")
    await _store_missed_job(settings, engine, spec, timedelta(hours=5))
    assert describe_jobs(settings, engine, specs=[spec])[0].note == "missed; runs when the scheduler starts"
    shutdown = asyncio.Event()
    daemon = asyncio.create_task(
        serve(settings, engine, specs=[spec], shutdown=shutdown, install_signals=False)
    )
    await until(lambda: any(r.state == "finished" for r in runs(engine)))
    await asyncio.sleep(0.5)
    shutdown.set()
    assert await asyncio.wait_for(daemon, 20) == 0
    assert [(r.state, r.trigger) for r in runs(engine)] == [("finished", "schedule")]
    info = describe_jobs(settings, engine, specs=[spec])[0]
    assert info.next_run is not None and info.next_run > datetime.now(UTC) and info.note == ""


async def test_runs_missed_beyond_grace_are_skipped(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """When even the latest missed time is older than the grace time, nothing runs and job.skipped says so."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?m=2")])
    settings, engine = setup("[jobs]\nmisfire_grace_seconds = 60")
    spec = _hourly_far_from_now("nightly_check")
    await _store_missed_job(settings, engine, spec, timedelta(hours=5))
    shutdown = asyncio.Event()
    with capture_logs() as logs:
        daemon = asyncio.create_task(
            serve(settings, engine, specs=[spec], shutdown=shutdown, install_signals=False)
        )
        await until(lambda: any(e["event"] == "job.skipped" for e in logs), timeout=10)
        shutdown.set()
        assert await asyncio.wait_for(daemon, 20) == 0
    assert runs(engine) == []
    assert "missed" in next(e for e in logs if e["event"] == "job.skipped")["reason"]


async def test_changed_or_disabled_jobs_apply_on_restart(
    setup: Callable[..., tuple[Settings, Engine]], tmp_path: Path
) -> None:
    """A changed schedule replaces the stored job (new next time); a disabled job leaves the store."""
    settings, engine = setup()
    old = _hourly_far_from_now("nightly_check")
    await _store_missed_job(settings, engine, old, timedelta(hours=5))
    settings2, _ = setup('[jobs.nightly_check]\ncron = "0 3 * * *"\n[jobs.recheck_failing]\nenabled = false')
    scheduler = build_scheduler(settings2, engine)
    scheduler.start(paused=True)
    sync_jobs(scheduler, job_specs(settings2))
    stored = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.05)
    assert set(stored) == {"nightly_check", "prune_history"}
    assert stored["nightly_check"].next_run_time > datetime.now(UTC)
    assert (stored["nightly_check"].next_run_time.hour, stored["nightly_check"].next_run_time.minute) == (
        3,
        0,
    )


async def test_daemon_sigterm_interrupts_running_check_and_exits_0(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """SIGTERM while a scheduled check runs: in-flight requests finish, the run is interrupted, exit 0."""
    write_article(tmp_path / "corpus", "a", [server.url(f"/slow-headers/600?d={i}") for i in range(12)])
    settings, engine = setup("[jobs]\nshutdown_grace_seconds = 5.0", **{"http.concurrency": 2})
    specs = [JobSpec("nightly_check", True, IntervalTrigger(seconds=0.2, timezone=UTC), "fast")]
    daemon = asyncio.create_task(serve(settings, engine, specs=specs))
    await until(lambda: rows(engine, select(func.count()).select_from(RES))[0][0] >= 2)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(daemon, 20) == 0
    [run] = rows(engine, select(RUN))
    assert run.state == "interrupted" and 2 <= run.checked < 12
    assert rows(engine, select(func.count()).select_from(RES)) == [(run.checked,)]
    assert rows(engine, select(LeaseRow.__table__)) == []
    assert not (tmp_path / "reports" / "latest.html").exists()


# --- CLI across processes --------------------------------------------------------------------


def _spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
    )


def test_two_cli_checks_race_and_exactly_one_runs(server: FixtureServer, tmp_path: Path) -> None:
    """Two `monitor check` processes started together: one checks, the other exits 1 naming the holder."""
    write_article(tmp_path / "corpus", "a", [server.url(f"/slow-headers/4000?r={i}") for i in range(3)])
    config = write_config(tmp_path)
    open_engine(f"sqlite:///{tmp_path}/m.db").dispose()  # migrate first: this race is about the lock
    procs = [_spawn(config, "check", "-f", "json"), _spawn(config, "check", "-f", "json")]
    outs = [proc.communicate(timeout=60) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    assert codes == [0, 1], outs
    loser = outs[[p.returncode for p in procs].index(1)]
    assert "another check is running (holder " in loser[1] and "lease expires at" in loser[1]
    engine = open_engine(f"sqlite:///{tmp_path}/m.db")
    assert [(r.state, r.trigger) for r in runs(engine)] == [("finished", "cli")]
    assert len({s.target for s in server.requests()}) == 3
    engine.dispose()


def test_check_wait_gives_up_with_holder_message(server: FixtureServer, tmp_path: Path) -> None:
    """`monitor check --wait 0.5` on a held lock waits, then exits 1 with who holds it and until when."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?w=1")])
    config = write_config(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path}/m.db")
    assert acquire(engine, CORPUS_CHECK, "otherhost:99", 600)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--wait", "0.5"])
    assert result.exit_code == 1
    assert "another check is running (holder otherhost:99, lease expires at 20" in result.output
    assert time.monotonic() - started >= 0.4
    assert runs(engine) == []
    engine.dispose()


def test_run_job_cli_exit_codes(server: FixtureServer, tmp_path: Path) -> None:
    """`monitor run-job` exits 2 when the check found errors, 0 for a skip, 1 for an unknown job."""
    write_article(tmp_path / "corpus", "a", [server.url("/status/200?j=1"), server.url("/status/404?j=2")])
    config = write_config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["--config", str(config), "run-job", "nightly-check"]).exit_code == 2
    (tmp_path / "corpus" / "a.md").unlink()
    write_article(tmp_path / "corpus", "b", [server.url("/status/200?j=3")])
    assert runner.invoke(app, ["--config", str(config), "run-job", "nightly_check"]).exit_code == 0
    skipped = runner.invoke(app, ["--config", str(config), "run-job", "recheck_failing"])
    assert skipped.exit_code == 0 and "no URL is failing" in skipped.output
    unknown = runner.invoke(app, ["--config", str(config), "run-job", "nope"])
    assert unknown.exit_code == 1 and "unknown job 'nope'" in unknown.output
    listed = runner.invoke(app, ["--config", str(config), "jobs"])
    assert listed.exit_code == 0 and "recheck_failing  yes" in listed.output


def test_sigterm_during_cli_check_leaves_consistent_db(server: FixtureServer, tmp_path: Path) -> None:
    """SIGTERM mid-check: exit normally, run interrupted, finished results kept once each, lock released."""
    total = 24
    write_article(tmp_path / "corpus", "a", [server.url(f"/slow-headers/700?s={i}") for i in range(total)])
    config = write_config(tmp_path, "[jobs]\nshutdown_grace_seconds = 5.0")
    proc = _spawn(config, "check", "-f", "json", "--concurrency", "4")
    engine = open_engine(f"sqlite:///{tmp_path}/m.db")
    deadline = time.monotonic() + 30
    at_signal = 0
    while at_signal < 4:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.1)
        at_signal = rows(engine, select(func.count()).select_from(RES))[0][0]
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "interrupted" in err
    [run] = rows(engine, select(RUN))
    kept = rows(
        engine, select(func.count(), func.count(RES.c.url_id.distinct())).where(RES.c.run_id == run.id)
    )[0]
    assert run.state == "interrupted"
    assert kept[0] == kept[1] == run.checked and at_signal <= run.checked < total
    updated = rows(engine, select(func.count()).select_from(URL).where(URL.c.last_run_id == run.id))[0][0]
    assert updated == run.checked
    assert rows(engine, select(LeaseRow.__table__)) == []
    engine.dispose()
