"""Archived copies of broken pages: lookups at a fake archive on 127.0.0.1 (the fixture server's
``/wayback/available``), the cache and its TTL, politeness, a failing archive, and the reports."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jsonschema import Draft202012Validator
from sqlalchemy import select, update
from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from monitor.clock import utcnow
from monitor.config import ArchiveSettings, HttpSettings, SafetySettings, Settings, load_settings
from monitor.fetch.archive import ArchiveClient, parse_answer
from monitor.run.archive import archive_lease, suggest_archived, suggest_archived_blocking
from monitor.run.check import run_check
from monitor.store import lease
from monitor.store.db import open_engine
from monitor.store.tables import ARCHIVE_COPIES
from monitor.types import ArchiveSnapshot
from reports import build_report, render
from tests.server import FixtureServer

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
STAMP = "20200102030405"


def corpus(tmp_path: Path, server: FixtureServer, **fields: str) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    lines = [
        "---",
        'title: "Archive fixture"',
        *(f'{k}: "{server.url(v)}"' for k, v in fields.items()),
        "---",
    ]
    (folder / "a.md").write_text("\n".join(lines) + "\n")


def dead_pages(tmp_path: Path, server: FixtureServer, n: int) -> None:
    """One article whose ``n`` related items each link a distinct page that answers 404."""
    (tmp_path / "corpus").mkdir()
    related = "".join(f'  - webUrl: "{server.url(f"/status/404?n={i}")}"\n' for i in range(n))
    (tmp_path / "corpus" / "a.md").write_text(f"---\ntitle: x\nrelated:\n{related}---\n")


def settings_for(tmp_path: Path, server: FixtureServer, **archive: object) -> Settings:
    overrides: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/archive.db",
        "corpus.roots": [str(tmp_path / "corpus")],
        "safety.allow_private": True,  # the fixture server and the fake archive are on 127.0.0.1
        "http.max_retries": 0,
        "logging.format": "json",
        "archive.enabled": True,
        "archive.endpoint": server.url(""),
        "archive.rate_per_s": 50.0,
        **{f"archive.{k}": v for k, v in archive.items()},
    }
    return load_settings(None, overrides)


def config_file(tmp_path: Path, server: FixtureServer, enabled: bool = True) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "\n".join(
            [
                f'database_url = "sqlite:///{tmp_path}/archive.db"',
                "[corpus]",
                f'roots = ["{tmp_path}/corpus"]',
                "[safety]",
                "allow_private = true",
                "[http]",
                "max_retries = 0",
                "[logging]",
                'format = "json"',
                "[archive]",
                f"enabled = {'true' if enabled else 'false'}",
                f'endpoint = "{server.url("")}"',
                "rate_per_s = 50.0",
            ]
        )
        + "\n"
    )
    return cfg


def lookups(server: FixtureServer) -> list[str]:
    """The page URLs the fake archive was asked about, in order."""
    return [parse_qs(urlsplit(seen.target).query)["url"][0] for seen in server.requests("/wayback/")]


def check(settings: Settings) -> tuple[Any, list[dict[str, Any]]]:
    engine = open_engine(settings.database_url)
    with capture_logs() as events:
        outcome = asyncio.run(run_check(settings, engine))
    engine.dispose()
    return outcome, events


def copy_of(url: str) -> str:
    return f"http://web.archive.test/web/{STAMP}/{url}"


# --- the suggestion in every report --------------------------------------------------------------


def test_broken_page_gets_its_archived_copy_in_every_report(server: FixtureServer, tmp_path: Path) -> None:
    """A broken page is looked up once; every report format and the export show its copy, the
    healthy page is never sent to the archive, and the exit code stays 2."""
    corpus(tmp_path, server, webUrl="/status/404", originalUrl="/status/200")
    cfg = config_file(tmp_path, server)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--format", "json"])
    assert result.exit_code == 2, result.output
    dead = server.url("/status/404")
    assert lookups(server) == [dead]
    doc = json.loads(result.stdout)
    item = next(u for u in doc["broken"]["urls"] if u["url"] == dead)
    assert item["archived"] == {
        "url": copy_of(dead),
        "timestamp": STAMP,
        "captured_at": "2020-01-02T03:04:05Z",
    }

    engine = open_engine(f"sqlite:///{tmp_path}/archive.db")
    data = build_report(engine)
    md = render(data, "markdown")
    assert f"archived copy: <{copy_of(dead)}> (2020-01-02 03:04:05 UTC)" in md
    assert f'href="{copy_of(dead)}"' in render(data, "html") and "archived copy: " in render(data, "html")
    assert "archived copy:" in render(data, "table")
    rows = list(csv.DictReader(io.StringIO(render(data, "csv"))))
    broken = [r for r in rows if r["section"] == "broken" and r["url"] == dead]
    assert broken and broken[0]["archived_url"] == copy_of(dead)
    assert broken[0]["archived_at"] == "2020-01-02T03:04:05Z"
    engine.dispose()

    exported = runner.invoke(app, ["-c", str(cfg), "export", "--format", "jsonl"])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    records = {r["url"]: r for r in lines[1:]}
    assert records[dead]["archived"]["url"] == copy_of(dead)
    assert records[server.url("/status/200")]["archived"] is None
    for schema, docs in (("export.schema.json", lines), ("report.schema.json", [doc])):
        validator = Draft202012Validator(json.loads((ROOT / "reports" / schema).read_text(encoding="utf-8")))
        assert [e.message for d in docs for e in validator.iter_errors(d)] == []


def test_table_report_shows_the_copy(server: FixtureServer, tmp_path: Path) -> None:
    """The terminal table puts the copy under the reason of the broken row."""
    corpus(tmp_path, server, webUrl="/status/410")
    check(settings_for(tmp_path, server))
    engine = open_engine(f"sqlite:///{tmp_path}/archive.db")
    text = render(build_report(engine), "table")
    engine.dispose()
    assert "archived copy:" in text and STAMP[:4] in text


def test_soft_404_is_looked_up_and_a_page_with_a_secret_is_not(server: FixtureServer, tmp_path: Path) -> None:
    """soft_404 counts as dead; a URL with a token in it is never sent to a third party."""
    corpus(
        tmp_path,
        server,
        webUrl="/gone/2020/story?to=/",
        originalUrl="/status/404?token=s3cret",
    )
    outcome, _ = check(settings_for(tmp_path, server))
    assert outcome.counts.get("soft_404") == 1 and outcome.counts.get("broken") == 1
    assert lookups(server) == [server.url("/gone/2020/story?to=/")]


# --- the cache ------------------------------------------------------------------------------------


def test_second_run_uses_the_cache_and_an_expired_answer_is_asked_again(
    server: FixtureServer, tmp_path: Path
) -> None:
    """Found and "none found" are both cached: a second run sends no lookup; past the TTL both are
    asked again."""
    corpus(tmp_path, server, webUrl="/status/404", originalUrl="/status/404?never-archived=1")
    s = settings_for(tmp_path, server, ttl_hours=24)
    check(s)
    assert len(lookups(server)) == 2
    engine = open_engine(s.database_url)
    with engine.connect() as conn:
        cached = {row.url_id: row.snapshot_url for row in conn.execute(select(ARCHIVE_COPIES))}
    assert sorted(v is None for v in cached.values()) == [False, True]

    server.reset()
    _, events = check(s)
    assert lookups(server) == []
    finished = next(e for e in events if e["event"] == "archive.finished")
    assert finished["looked_up"] == 0 and finished["left"] == 0

    with engine.begin() as conn:
        conn.execute(update(ARCHIVE_COPIES).values(looked_up_at=utcnow() - timedelta(hours=25)))
    engine.dispose()
    server.reset()
    check(s)
    assert sorted(lookups(server)) == sorted(
        [server.url("/status/404"), server.url("/status/404?never-archived=1")]
    )


def test_another_endpoint_does_not_reuse_the_cache(server: FixtureServer, tmp_path: Path) -> None:
    """An answer is the endpoint's: switching archives asks the new one."""
    corpus(tmp_path, server, webUrl="/status/404")
    check(settings_for(tmp_path, server))
    server.reset()
    check(settings_for(tmp_path, server, endpoint=server.url("", host="localhost")))
    assert len(lookups(server)) == 1


# --- politeness -----------------------------------------------------------------------------------


def test_lookups_stay_within_concurrency(server: FixtureServer, tmp_path: Path) -> None:
    """However many pages are dead, no more than ``concurrency`` lookups are in flight at the archive."""
    dead_pages(tmp_path, server, 8)
    server.set_switch("archive-delay-ms", 100)
    outcome, _ = check(settings_for(tmp_path, server, concurrency=2, rate_per_s=100.0))
    assert outcome.counts.get("broken") == 8
    assert len(lookups(server)) == 8
    assert server.peak_by_route()["wayback"] <= 2


def test_lookup_starts_are_spaced_by_the_rate(server: FixtureServer, tmp_path: Path) -> None:
    """``rate_per_s`` spaces request starts at the archive (a lower bound only: no test times out)."""
    dead_pages(tmp_path, server, 4)
    check(settings_for(tmp_path, server, concurrency=4, rate_per_s=5.0))
    starts = sorted(seen.started for seen in server.requests("/wayback/"))
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.15, gaps  # 0.2 s apart, less the client's and server's timing noise


def test_429_retry_after_holds_the_lookups_back(server: FixtureServer, tmp_path: Path) -> None:
    """A 429 with Retry-After: the lookup waits that long, asks again, and the answer is cached."""
    corpus(tmp_path, server, webUrl="/status/404")
    server.set_switch("archive-429", 1)
    server.set_switch("archive-retry-after", 1)
    _, events = check(settings_for(tmp_path, server))
    seen = server.requests("/wayback/")
    assert len(seen) == 2 and seen[1].started - seen[0].started >= 0.9
    assert not [e for e in events if e["event"].startswith("archive.") and e["event"] != "archive.finished"]
    finished = next(e for e in events if e["event"] == "archive.finished")
    assert finished["found"] == 1


def test_429_asking_too_long_leaves_the_archive_alone(server: FixtureServer, tmp_path: Path) -> None:
    """A Retry-After over http.retry_after_cap ends the lookups for the run: logged, nothing cached."""
    dead_pages(tmp_path, server, 5)
    server.set_switch("archive", 429)
    server.set_switch("archive-retry-after", 3600)
    s = settings_for(tmp_path, server, concurrency=1)
    outcome, events = check(s)
    assert outcome.state == "finished"
    assert len(lookups(server)) == 1
    gone = [e for e in events if e["event"] == "archive.unavailable"]
    assert len(gone) == 1 and "3600" in gone[0]["error"] and gone[0]["skipped"] == 4
    engine = open_engine(s.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(ARCHIVE_COPIES)).all() == []
    engine.dispose()


# --- a failing archive never fails the run --------------------------------------------------------


def _failing_run(server: FixtureServer, tmp_path: Path, **archive: object) -> list[dict[str, Any]]:
    """Check with the archive off, then on and failing: the same exit code; the failing run's events."""
    dead_pages(tmp_path, server, 5)
    off = runner.invoke(app, ["-c", str(config_file(tmp_path, server, enabled=False)), "check", "-f", "json"])
    s = settings_for(tmp_path, server, concurrency=1, timeout_s=2.0, **archive)
    outcome, events = check(s)
    assert off.exit_code == 2 and outcome.state == "finished" and outcome.errors == 5
    engine = open_engine(s.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(ARCHIVE_COPIES)).all() == []  # a failure is no "none found"
    engine.dispose()
    on = runner.invoke(app, ["-c", str(config_file(tmp_path, server)), "check", "-f", "json"])
    assert on.exit_code == off.exit_code, on.output
    return events


def _assert_left_alone(events: list[dict[str, Any]], needle: str) -> None:
    failed = [e for e in events if e["event"] == "archive.lookup_failed"]
    gone = [e for e in events if e["event"] == "archive.unavailable"]
    assert len(failed) == 3 and all(needle in e["error"] for e in failed), failed
    assert len(gone) == 1 and needle in gone[0]["error"] and gone[0]["skipped"] == 2


def test_archive_answering_500_is_logged_and_the_run_goes_on(server: FixtureServer, tmp_path: Path) -> None:
    server.set_switch("archive", 500)
    events = _failing_run(server, tmp_path)
    _assert_left_alone(events, "HTTP 500")


def test_archive_answering_garbage_is_logged_and_not_cached(server: FixtureServer, tmp_path: Path) -> None:
    server.set_switch("archive", 600)
    events = _failing_run(server, tmp_path)
    _assert_left_alone(events, "not JSON")


def test_archive_answering_other_json_is_an_error(server: FixtureServer, tmp_path: Path) -> None:
    server.set_switch("archive", 601)
    events = _failing_run(server, tmp_path)
    _assert_left_alone(events, "archived_snapshots")


def test_archive_that_is_down_is_logged_and_the_run_goes_on(server: FixtureServer, tmp_path: Path) -> None:
    """Nothing listens at the endpoint: connection refused, three times, then the archive is left alone."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    events = _failing_run(server, tmp_path, endpoint=f"http://127.0.0.1:{closed}")
    failed = [e for e in events if e["event"] == "archive.lookup_failed"]
    assert len(failed) == 3 and [e for e in events if e["event"] == "archive.unavailable"]


def test_archive_is_guarded_like_any_target(server: FixtureServer, tmp_path: Path) -> None:
    """Without allow_private the loopback archive is refused by the address guard: no request leaves."""
    corpus(tmp_path, server, webUrl="/status/404")
    s = settings_for(tmp_path, server)
    engine = open_engine(s.database_url)
    asyncio.run(run_check(s, engine))
    server.reset()
    guarded = s.model_copy(update={"safety": SafetySettings()})
    with capture_logs() as events:
        with engine.begin() as conn:
            conn.execute(ARCHIVE_COPIES.delete())
        summary = asyncio.run(suggest_archived(guarded, engine, 1))
    engine.dispose()
    assert lookups(server) == []
    assert summary is not None and summary.failed == 1 and summary.found == 0
    failed = [e for e in events if e["event"] == "archive.lookup_failed"]
    assert failed and "loopback" in failed[0]["error"]


# --- switched off ---------------------------------------------------------------------------------


def test_disabled_sends_nothing_to_the_archive(server: FixtureServer, tmp_path: Path) -> None:
    corpus(tmp_path, server, webUrl="/status/404")
    result = runner.invoke(
        app, ["-c", str(config_file(tmp_path, server, enabled=False)), "check", "-f", "json"]
    )
    assert result.exit_code == 2
    assert server.requests("/wayback/") == [] and server.requests("/status/404")
    assert "archived copy" not in result.stdout


def test_no_archive_flag_skips_the_lookups_of_one_run(server: FixtureServer, tmp_path: Path) -> None:
    corpus(tmp_path, server, webUrl="/status/404")
    cfg = config_file(tmp_path, server, enabled=True)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--no-archive", "-f", "json"])
    assert result.exit_code == 2 and server.requests("/wayback/") == []
    result = runner.invoke(app, ["-c", str(cfg), "check", "-f", "json"])
    assert result.exit_code == 2 and len(server.requests("/wayback/")) == 1


def test_archive_flag_turns_lookups_on_for_one_run(server: FixtureServer, tmp_path: Path) -> None:
    corpus(tmp_path, server, webUrl="/status/404")
    cfg = config_file(tmp_path, server, enabled=False)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--archive", "-f", "markdown"])
    assert result.exit_code == 2 and len(server.requests("/wayback/")) == 1
    assert "archived copy: " in result.stdout


# --- the client and the answer's shapes -----------------------------------------------------------


def test_parse_answer_shapes() -> None:
    """The documented shape gives a copy or none; anything else is an error (never cached as none)."""
    url = "https://news.example/gone"
    found = {"archived_snapshots": {"closest": {"available": True, "url": copy_of(url), "timestamp": STAMP}}}
    assert parse_answer(url, json.dumps(found).encode()).snapshot == ArchiveSnapshot(copy_of(url), STAMP)
    for none in (
        {"archived_snapshots": {}},
        {"archived_snapshots": {"closest": {"available": False}}},
        {
            "archived_snapshots": {
                "closest": {"available": True, "url": copy_of(url), "timestamp": STAMP, "status": "404"}
            }
        },
    ):
        answer = parse_answer(url, json.dumps(none).encode())
        assert answer.snapshot is None and answer.error is None, none
    for bad in (
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"archived_snapshots": []}',
        b'{"archived_snapshots": {"closest": "yes"}}',
        b'{"archived_snapshots": {"closest": {"available": true, "url": "javascript:x", "timestamp": "1"}}}',
        b'{"archived_snapshots": {"closest": {"available": true, "url": "http://a.example/"}}}',
    ):
        assert parse_answer(url, bad).error is not None, bad


def test_snapshot_capture_time() -> None:
    assert ArchiveSnapshot("http://a/", STAMP).captured == "2020-01-02 03:04:05 UTC"
    assert ArchiveSnapshot("http://a/", "2020").captured == "2020"
    assert ArchiveSnapshot("http://a/", "2020").captured_iso is None


def test_client_with_a_bad_endpoint_answers_errors() -> None:
    """A misconfigured endpoint fails every lookup with the reason and sends nothing."""

    async def go() -> Any:
        archive = ArchiveSettings(enabled=True, endpoint="ftp://archive.example")
        async with ArchiveClient(archive, HttpSettings(), SafetySettings()) as client:
            return await client.lookup("https://news.example/gone"), client.requests

    answer, requests = asyncio.run(go())
    assert answer.error == "archive.endpoint is not an http(s) URL" and requests == 0


# --- monitor fix --archive ------------------------------------------------------------------------


def test_fix_archive_proposes_the_copy_and_apply_writes_it(server: FixtureServer, tmp_path: Path) -> None:
    """`fix --archive` shows the dead link replaced by its archived copy and writes nothing;
    `--apply` writes exactly that value. An AMP field and a page with no copy stay as they are."""
    dead, nocopy = server.url("/status/404"), server.url("/status/410?never-archived=1")
    amp = server.url("/status/404?amp=1")
    folder = tmp_path / "corpus"
    folder.mkdir()
    text = (
        f"---\ntitle: Dead  # kept\nwebUrl: {dead}\noriginalUrl: '{nocopy}'\nampWebUrl: {amp}\n---\nBody.\n"
    )
    article = folder / "a.md"
    article.write_text(text)
    cfg = config_file(tmp_path, server)
    assert runner.invoke(app, ["-c", str(cfg), "check"]).exit_code == 2
    assert runner.invoke(app, ["-c", str(cfg), "fix"]).stdout == ""  # not without --archive

    shown = runner.invoke(app, ["-c", str(cfg), "fix", "--archive"])
    assert shown.exit_code == 0, shown.output
    assert f"-webUrl: {dead}\n+webUrl: {copy_of(dead)}\n" in shown.stdout
    changed = [
        line for line in shown.stdout.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == [f"-webUrl: {dead}", f"+webUrl: {copy_of(dead)}"]
    assert article.read_text() == text

    applied = runner.invoke(app, ["-c", str(cfg), "fix", "--archive", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert article.read_text() == text.replace(f"webUrl: {dead}\n", f"webUrl: {copy_of(dead)}\n", 1)


def test_one_finalizer_at_a_time_looks_up(server: FixtureServer, tmp_path: Path) -> None:
    """The distributed finalizer's lookups are under the run's lease: a second finalizer (another
    worker's reaper) finds it held and leaves the run alone, and sends nothing to the archive."""
    corpus(tmp_path, server, webUrl="/status/404")
    s = settings_for(tmp_path, server)
    engine = open_engine(s.database_url)
    asyncio.run(run_check(s, engine))
    with engine.begin() as conn:
        conn.execute(ARCHIVE_COPIES.delete())
    server.reset()
    assert lease.acquire(engine, archive_lease(1), "other-host:1", 60)
    assert suggest_archived_blocking(s, engine, 1) is False
    assert lookups(server) == []
    lease.release(engine, archive_lease(1), "other-host:1")
    assert suggest_archived_blocking(s, engine, 1) is True
    assert len(lookups(server)) == 1
    assert lease.current(engine, archive_lease(1)) is not None  # kept until the run is closed
    engine.dispose()
