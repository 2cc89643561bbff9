"""`monitor check` end to end: a real corpus, the real fixture server, a real SQLite database."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import Settings, load_settings
from monitor.run.check import RunRequest, run_check
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, RunRow, SizeCheckRow, UrlRow
from tests.server import FixtureServer

ROOT = Path(__file__).resolve().parent.parent
JPEG = "/image/exif-orientation-examples/Landscape_1.jpg"  # 1800x1200


def article(server: FixtureServer, **urls: str) -> str:
    """A small article whose URLs point at the fixture server (paths given per field)."""
    u = server.url
    lines = ["---", 'title: "Fixture article"']
    for field in ("originalUrl", "webUrl", "ampWebUrl"):
        if field in urls:
            lines.append(f'{field}: "{u(urls[field])}"')
    if "images" in urls:
        lines.append("images:")
        for spec in urls["images"].split(","):
            path, size = spec.split("@")
            w, h = size.split("x")
            lines += [f'  - url: "{u(path)}"', f"    width: {w}", f"    height: {h}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def settings_for(tmp_path: Path, **extra: object) -> Settings:
    overrides = {
        "database_url": f"sqlite:///{tmp_path}/check.db",
        "corpus.roots": [str(tmp_path / "corpus")],
        "safety.allow_private": True,
        "http.backoff_base": 0.01,
        "http.backoff_max": 0.05,
        "logging.format": "json",
        **extra,
    }
    return load_settings(None, overrides)


def write(tmp_path: Path, name: str, content: str) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(content)


def config_file(tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / "c.toml"
    lines = [
        f'database_url = "sqlite:///{tmp_path}/check.db"',
        "[corpus]",
        f'roots = ["{tmp_path}/corpus"]',
        "[safety]",
        "allow_private = true",
        "[http]",
        "backoff_base = 0.01",
        "backoff_max = 0.05",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[logging]",
        'format = "json"',
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


runner = CliRunner()


def test_check_json_output_judges_every_url(server: FixtureServer, tmp_path: Path) -> None:
    """Each URL gets the right verdict, image occurrences get size checks, and the exit code is 2."""
    write(
        tmp_path,
        "a.md",
        article(
            server,
            webUrl="/status/200",
            ampWebUrl="/status/404",
            originalUrl="/redirect-to/301?to=/status/200",
            images=f"{JPEG}@1800x1200,{JPEG}?s=1@900x600,{JPEG}?m=1@100x300,/html-as-image@10x10",
        ),
    )
    result = runner.invoke(app, ["-c", str(config_file(tmp_path)), "check", "--format", "json"])
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "link-media-monitor/report" and doc["version"] == 1
    verdicts: dict[str, str] = {}
    checks: dict[str, str] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "url" in node and "verdict" in node:
                verdicts[node["url"]] = node["verdict"]
                for occ in node.get("occurrences", []):
                    if occ.get("size_check"):
                        checks[occ["location"]] = occ["size_check"]["verdict"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert verdicts[server.url("/status/404")] == "broken"
    assert verdicts[server.url("/redirect-to/301?to=/status/200")] == "moved_permanently"
    assert verdicts[server.url("/html-as-image")] == "not_image"
    assert checks["images[1].url"] == "scaled" and checks["images[2].url"] == "size_mismatch"
    engine = open_engine(f"sqlite:///{tmp_path}/check.db")
    with engine.connect() as conn:
        rows = dict(
            conn.execute(select(SizeCheckRow.verdict, func.count()).group_by(SizeCheckRow.verdict)).all()
        )
        assert rows == {"match": 1, "scaled": 1, "size_mismatch": 1, "unknown": 1}
        assert conn.execute(select(func.count()).select_from(ResultRow)).scalar_one() == 7


def test_all_good_exits_zero(server: FixtureServer, tmp_path: Path) -> None:
    """A corpus where everything works exits 0 and prints the summary."""
    write(tmp_path, "a.md", article(server, webUrl="/status/200", images=f"{JPEG}@1800x1200"))
    result = runner.invoke(app, ["-c", str(config_file(tmp_path)), "check", "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert "Checked" in result.stdout


def test_each_url_fetched_once_however_many_articles_use_it(server: FixtureServer, tmp_path: Path) -> None:
    """Twenty articles sharing one URL cause one request for it per run."""
    for i in range(20):
        write(
            tmp_path,
            f"a{i}.md",
            article(server, webUrl="/status/200?shared=1", ampWebUrl=f"/status/200?n={i}"),
        )
    s = settings_for(tmp_path)
    outcome = asyncio.run(run_check(s, open_engine(s.database_url)))
    assert outcome.checked == 21
    assert len(server.requests("/status/200?shared=1")) == 1


def test_history_state_and_alert_after_two_runs(server: FixtureServer, tmp_path: Path) -> None:
    """Two runs keep two result rows; the broken link alerts only on the second run (alert_after=2)."""
    write(tmp_path, "a.md", article(server, webUrl="/status/410", ampWebUrl="/status/200"))
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    with capture_logs() as first:
        asyncio.run(run_check(s, engine))
    with capture_logs() as second:
        asyncio.run(run_check(s, engine))
    assert not [e for e in first if e["event"] == "link.broken"]
    broken = [e for e in second if e["event"] == "link.broken"]
    assert [e["url"] for e in broken] == [server.url("/status/410")]
    assert broken[0]["locations"] == [f"{tmp_path}/corpus/a.md:webUrl"] and broken[0]["http_status"] == 410
    with engine.connect() as conn:
        runs = conn.execute(select(RunRow.state, RunRow.checked).order_by(RunRow.id)).all()
        state = conn.execute(
            select(UrlRow.consecutive_failures, UrlRow.failing_since, UrlRow.alert_state).where(
                UrlRow.url == server.url("/status/410")
            )
        ).one()
    assert runs == [("finished", 2), ("finished", 2)]
    assert state[0] == 2 and state[1] is not None and state[2] == "broken"
    assert {e["event"] for e in second} >= {"run.started", "run.finished"}


def test_second_run_uses_conditional_requests(server: FixtureServer, tmp_path: Path) -> None:
    """The second run sends If-None-Match and keeps the previous facts on 304, reading no body."""
    write(tmp_path, "a.md", article(server, webUrl="/etag?v=1"))
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    asyncio.run(run_check(s, engine))
    asyncio.run(run_check(s, engine))
    sent = server.requests("/etag")
    assert any("if-none-match" in {k.lower() for k in r.headers} for r in sent[1:])
    with engine.connect() as conn:
        rows = conn.execute(
            select(ResultRow.verdict, ResultRow.not_modified).order_by(ResultRow.run_id)
        ).all()
    assert rows == [("ok", False), ("ok", True)]


def test_remap_fetches_elsewhere_but_reports_article_url(server: FixtureServer, tmp_path: Path) -> None:
    """A remap rule routes the fetch to another address; results stay under the article's URL."""
    write(tmp_path, "a.md", '---\nwebUrl: "https://www.news.invalid/status/200"\n---\n')
    rule = [{"pattern": r"^https://www\.news\.invalid/", "replacement": server.url("/")}]
    s = settings_for(tmp_path, **{"http.remap": rule})
    engine = open_engine(s.database_url)
    outcome = asyncio.run(run_check(s, engine))
    assert outcome.counts == {"ok": 1}
    with engine.connect() as conn:
        assert conn.execute(select(UrlRow.url)).scalar_one() == "https://www.news.invalid/status/200"


def test_per_host_limit_holds_across_the_run(server: FixtureServer, tmp_path: Path) -> None:
    """With 30 slow URLs on one host and per_host_concurrency=3, the server never sees more than 3 at once."""
    for i in range(30):
        write(tmp_path, f"a{i}.md", article(server, webUrl=f"/slow-headers/60?i={i}"))
    s = settings_for(tmp_path, **{"http.per_host_concurrency": 3, "http.concurrency": 64})
    asyncio.run(run_check(s, open_engine(s.database_url)))
    assert max(server.peak_by_host().values()) == 3


def test_stop_marks_run_interrupted_and_resume_finishes_it(server: FixtureServer, tmp_path: Path) -> None:
    """A stopped run keeps its results; --resume checks only the rest, with no duplicate rows."""
    for i in range(12):
        write(tmp_path, f"a{i}.md", article(server, webUrl=f"/slow-headers/150?i={i}"))
    s = settings_for(tmp_path, **{"http.per_host_concurrency": 2, "jobs.shutdown_grace_seconds": 5.0})
    engine = open_engine(s.database_url)

    async def stopped() -> object:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.4, stop.set)
        return await run_check(s, engine, stop=stop)

    first = asyncio.run(stopped())
    assert first.state == "interrupted" and 0 < first.checked < 12  # type: ignore[attr-defined]
    resumed = asyncio.run(run_check(s, engine, RunRequest(resume=True)))
    assert resumed.run_id == first.run_id and resumed.state == "finished"  # type: ignore[attr-defined]
    with engine.connect() as conn:
        n, distinct = conn.execute(
            select(func.count(), func.count(func.distinct(ResultRow.url_id))).where(
                ResultRow.run_id == resumed.run_id
            )
        ).one()
    assert n == distinct == 12
    fetched = {r.target for r in server.requests("/slow-headers/150")}
    assert len(fetched) == 12


def test_kill_9_keeps_results_and_next_run_marks_interrupted(server: FixtureServer, tmp_path: Path) -> None:
    """kill -9 mid-check keeps committed results; the next start marks the run interrupted; resume ends it."""
    for i in range(40):
        write(tmp_path, f"a{i}.md", article(server, webUrl=f"/slow-headers/100?k={i}"))
    cfg = config_file(tmp_path, per_host_concurrency="4")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "-c", str(cfg), "check"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    engine = open_engine(f"sqlite:///{tmp_path}/check.db")
    deadline = time.monotonic() + 20
    done = 0
    while time.monotonic() < deadline and done < 8:
        time.sleep(0.1)
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
        assert conn.execute(select(RunRow.state)).scalar_one() == "running"
    assert 8 <= kept < 40
    result = runner.invoke(app, ["-c", str(cfg), "check", "--resume", "-f", "json"])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        runs = conn.execute(select(RunRow.id, RunRow.state)).all()
        n, distinct = conn.execute(select(func.count(), func.count(func.distinct(ResultRow.url_id)))).one()
    assert runs == [(1, "finished")] and n == distinct == 40


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_output_file(server: FixtureServer, tmp_path: Path, fmt: str) -> None:
    """--output writes the chosen format to a file and prints nothing of it."""
    write(tmp_path, "a.md", article(server, webUrl="/status/500"))
    out = tmp_path / f"out.{fmt}"
    result = runner.invoke(app, ["-c", str(config_file(tmp_path)), "check", "-f", fmt, "-o", str(out)])
    assert result.exit_code == 2
    body = out.read_text()
    assert result.stdout.count("status/500") == 0  # the report went to the file, not the terminal
    assert f"127.0.0.1:{server.port}" in body and "broken" in body


def test_check_on_postgres(server: FixtureServer, tmp_path: Path) -> None:
    """The same run works against PostgreSQL: results, state and size checks are stored."""
    from tests.pg_schema import pg_schema_url

    write(tmp_path, "a.md", article(server, webUrl="/status/404", images=f"{JPEG}@900x600"))
    with pg_schema_url() as url:
        s = settings_for(tmp_path, database_url=url)
        engine = open_engine(url)
        asyncio.run(run_check(s, engine))
        outcome = asyncio.run(run_check(s, engine))
        assert outcome.counts == {"broken": 1, "ok": 1}
        with engine.connect() as conn:
            assert conn.execute(text("select count(*) from result")).scalar_one() == 4
            assert conn.execute(text("select verdict from size_check limit 1")).scalar_one() == "scaled"
        engine.dispose()


def test_host_queue_hands_out_round_robin_within_each_hosts_limit() -> None:
    """Targets come host after host, never more than a host's limit at once, each exactly once,
    also with thousands of hosts of one URL each; the end is announced once the last is out."""
    from monitor.fetch.hosts import HostLimiter
    from monitor.run.hostqueue import HostQueue
    from monitor.store.plan import Planned
    from monitor.types import Target, TargetKind

    async def scenario() -> None:
        def planned(i: int, host: str) -> Planned:
            return Planned(i, Target(f"http://{host}/{i}", host, TargetKind.PAGE))

        queue = HostQueue(HostLimiter(2))
        page = [planned(i, "a") for i in range(5)] + [planned(10 + i, "b") for i in range(2)]
        page += [planned(100 + i, f"h{i}") for i in range(3000)]
        queue.add(page, last=True)
        first = [queue.take() for _ in range(5)]
        assert [p.target.host for p in first if p] == ["a", "b", "h0", "h1", "h2"]
        taken = [p for p in first if p]
        while (item := queue.take()) is not None:
            taken.append(item)
        # a and b are at their limit of 2 until one of theirs is released
        assert sum(p.target.host == "a" for p in taken) == 2
        assert sum(p.target.host == "b" for p in taken) == 2
        assert not queue.finished
        for item in [p for p in taken if p.target.host == "a"]:
            queue.release(item)
        rest = [queue.take(), queue.take(), queue.take()]
        assert [p.target.host for p in rest if p] == ["a", "a"] and rest[2] is None
        queue.release(rest[0])  # type: ignore[arg-type]
        last = queue.take()
        assert last is not None and last.target.host == "a" and queue.finished
        ids = [p.url_id for p in taken + rest[:2] + [last] if p]
        assert sorted(ids) == sorted(p.url_id for p in page)

    asyncio.run(scenario())


def test_bound_hosts_are_those_whose_own_floor_exceeds_the_global_floor() -> None:
    """With 64 slots and 1,000 targets the global floor is 15.6 targets per slot: a host with 300
    targets at limit 8 (37.5 per slot) is bound, one with 300 at limit 64 is not, and the bound
    hosts' limits always fit in the global slots."""
    from monitor.run.hostqueue import bound_hosts

    counts = {"big": 300, "mid": 150, "wide": 300, "small": 250}
    limits = {"big": 8, "mid": 8, "wide": 64, "small": 8}
    assert bound_hosts(counts, limits, 64) == ["big", "small", "mid"]  # longest floor first
    assert bound_hosts(counts, {h: 64 for h in counts}, 64) == []
    assert bound_hosts({}, {}, 64) == []
    skewed = {f"h{i}": n for i, n in enumerate([5000, 900, 800, 50, 40, 30] + [1] * 3000)}
    chosen = bound_hosts(skewed, dict.fromkeys(skewed, 4), 64)
    assert chosen[0] == "h0" and sum(4 for _ in chosen) < 64


@pytest.mark.parametrize("hosts", [1, 2])
def test_what_timed_out_last_run_is_sent_first(tmp_path: Path, hosts: int) -> None:
    """A URL that timed out last run is requested first on its host in the next run, so its wait
    overlaps the others' instead of holding the run open at the end; the rest keep their order.
    With two hosts, the busier one is bound (read through a cursor of its own): the same holds."""
    server = FixtureServer(listeners=2).start()
    try:
        for i in range(12):
            write(tmp_path, f"a{i:02}.md", article(server, webUrl=f"/status/200?i={i}"))
        write(tmp_path, "z-last.md", article(server, webUrl="/slow-headers/3000"))  # the newest id
        if hosts == 2:  # a second host with one URL: the first is then bound (limit 1 of 2 slots)
            write(tmp_path, "other.md", f'---\nwebUrl: "{server.url("/status/200?o", listener=1)}"\n---\n')
        s = settings_for(
            tmp_path, **{"http.per_host_concurrency": 1, "http.concurrency": 2, "http.total_timeout": 0.5}
        )
        engine = open_engine(s.database_url)
        first = asyncio.run(run_check(s, engine))
        assert first.counts.get("timeout") == 1
        busy = server.url("").removeprefix("http://")
        order = [r.target for r in server.requests() if r.host == busy]
        assert order[-1] == "/slow-headers/3000"  # by id: the newest URL last
        server.reset()
        second = asyncio.run(run_check(s, engine))
        assert second.counts == first.counts
        order = [r.target for r in server.requests() if r.host == busy]
        assert order[0] == "/slow-headers/3000"
        assert order[1:] == [f"/status/200?i={i}" for i in range(12)]
    finally:
        server.stop()


def test_host_queue_serves_bound_hosts_first_and_loads_them_apart() -> None:
    """A bound host gets its free slots before any round-robin host, its targets come from its own
    source, and a full buffer of it never stops the shared source from asking for more."""
    from monitor.fetch.hosts import HostLimiter
    from monitor.run.hostqueue import HOST_PAGE, MAIN, HostQueue
    from monitor.store.plan import Planned
    from monitor.types import Target, TargetKind

    async def scenario() -> None:
        def planned(i: int, host: str) -> Planned:
            return Planned(i, Target(f"http://{host}/{i}", host, TargetKind.PAGE))

        queue = HostQueue(HostLimiter(2), ["big"])
        queue.add([planned(i, "big") for i in range(HOST_PAGE)], last=False, source="big")
        assert not queue.sources["big"].low.is_set()  # a full page of the bound host is loaded
        assert queue.low.is_set()  # and the shared source still asks for its first page
        queue.add([planned(10_000 + i, f"h{i % 3}") for i in range(6)], last=True, source=MAIN)
        hosts = [item.target.host for item in iter(queue.take, None)]
        assert hosts == ["big", "big", "h0", "h1", "h2", "h0", "h1", "h2"]
        assert not queue.finished and queue.sources["big"].low.is_set()  # below a page: load the next

    asyncio.run(scenario())


def test_a_host_stays_at_its_limit_while_one_of_its_targets_waits_to_retry(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 whose retry waits 0.6 s holds no slot meanwhile: the host's other targets keep both of
    its two slots busy through the wait (counted at the server, at the middle of the wait)."""

    class TopOfTheJitter(random.Random):
        def random(self) -> float:
            return 0.999  # the backoff's full jitter at its ceiling: a wait of 0.6 s

    monkeypatch.setattr(random, "Random", TopOfTheJitter)
    # HEAD 503 falls back to GET at once; that GET's 503 is retried after the backoff
    write(tmp_path, "flaky.md", article(server, webUrl="/flaky/2?key=wait"))
    for i in range(12):
        write(tmp_path, f"slow{i}.md", article(server, webUrl=f"/slow-headers/250?i={i}"))
    s = settings_for(
        tmp_path,
        **{
            "http.per_host_concurrency": 2,
            "http.concurrency": 8,
            "http.backoff_base": 0.6,
            "http.backoff_max": 0.6,
        },
    )
    outcome = asyncio.run(run_check(s, open_engine(s.database_url)))
    assert outcome.counts == {"ok": 13}
    head, first, retry = server.requests("/flaky/2")
    assert (head.method, first.method, retry.method) == ("HEAD", "GET", "GET")
    assert first.finished is not None and retry.started - first.finished >= 0.3  # it did wait
    middle = (first.finished + retry.started) / 2
    busy = [
        r
        for r in server.requests("/slow-headers/")
        if r.started <= middle and (r.finished is None or r.finished >= middle)
    ]
    assert len(busy) == 2
    assert max(server.peak_by_host().values()) == 2
