"""Run scope end to end: `check PATH…` and `links PATH…` work on the articles under those roots only,
a missing root is an error before anything changes, and history stays database-wide."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from jobs.runner import execute
from monitor.cli import app
from monitor.config import load_settings
from monitor.store.db import open_engine
from monitor.store.tables import ARTICLES, OCCURRENCES, RESULTS, RUNS, URLS
from tests.server import FixtureServer

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("plain_structlog")  # in-process runs configure logging


def _config(tmp_path: Path, roots: list[Path]) -> Path:
    cfg = tmp_path / "c.toml"
    listed = ", ".join(f'"{r}"' for r in roots)
    cfg.write_text(
        f'database_url = "sqlite:///{tmp_path}/scope.db"\n[corpus]\nroots = [{listed}]\n'
        '[safety]\nallow_private = true\n[http]\nmax_retries = 0\n[logging]\nformat = "json"\n'
        f'[reports]\nfolder = "{tmp_path}/reports"\n',
        encoding="utf-8",
    )
    return cfg


def _article(folder: Path, name: str, *lines: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("---\n" + "\n".join(lines) + "\n---\nBody.\n", encoding="utf-8")


def _two_roots(server: FixtureServer, tmp_path: Path) -> tuple[Path, Path, Path]:
    """a/ links one own URL and one shared with b/; b/ has a broken URL, a finding and a bad file."""
    a, b = tmp_path / "a", tmp_path / "b"
    shared = f'originalUrl: "{server.url("/status/200?shared=1")}"'
    _article(a, "one.md", 'title: "A"', f'webUrl: "{server.url("/status/200?own=a")}"', shared)
    _article(b, "two.md", 'title: "B"', f'webUrl: "{server.url("/status/404?own=b")}"', shared)
    _article(b, "bad-url.md", 'title: "B2"', 'webUrl: "not a url"')
    (b / "broken.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")
    return a, b, _config(tmp_path, [a, b])


def _monitor(cfg: Path, *args: str) -> Result:
    return runner.invoke(app, ["-c", str(cfg), *args])


def test_check_a_after_b_reports_and_fetches_nothing_of_b(server: FixtureServer, tmp_path: Path) -> None:
    """The report (and exit code) of `check a/` holds a's URLs only, though b/ is broken and was
    checked just before; b's URLs are not fetched; the shared URL keeps one history over both runs."""
    a, b, cfg = _two_roots(server, tmp_path)
    first = _monitor(cfg, "check", str(b), "--format", "json")
    assert first.exit_code == 2, first.output  # b's broken URL, its finding and its bad file
    server.reset()
    second = _monitor(cfg, "check", str(a), "--format", "json")
    assert second.exit_code == 0, second.output
    assert "own=b" not in second.stdout and str(b) not in second.stdout
    doc = json.loads(second.stdout)
    assert doc["summary"]["checked"] == 2 and doc["summary"]["findings"] == 0
    assert doc["summary"]["corpus_errors"] == 0 and doc["summary"]["articles"] == 1
    fetched = sorted(s.target for s in server.requests())
    assert fetched and all("own=a" in t or "shared=1" in t for t in fetched), fetched
    assert any("own=a" in t for t in fetched) and any("shared=1" in t for t in fetched)

    engine = open_engine(f"sqlite:///{tmp_path}/scope.db")
    with engine.connect() as conn:
        roots = dict(conn.execute(select(RUNS.c.id, RUNS.c.roots).order_by(RUNS.c.id)).all())
        assert [json.loads(r) for r in roots.values()] == [[b.as_posix()], [a.as_posix()]]
        shared_id = conn.execute(select(URLS.c.id).where(URLS.c.url.contains("shared=1"))).scalar_one()
        history = conn.execute(select(RESULTS.c.run_id).where(RESULTS.c.url_id == shared_id)).scalars().all()
        assert sorted(history) == sorted(roots)  # one URL row, a result from each run
        # b's inventory is untouched by a's pass
        b_files = select(func.count()).select_from(ARTICLES).where(ARTICLES.c.path.startswith(b.as_posix()))
        assert conn.execute(b_files.where(ARTICLES.c.deleted_at.is_(None))).scalar_one() == 3

    report = _monitor(cfg, "report", "--format", "json")  # the latest run: a's
    assert report.exit_code == 0, report.output
    assert "own=b" not in report.stdout and str(b) not in report.stdout
    engine.dispose()


def test_shared_url_lists_only_places_under_the_runs_roots(server: FixtureServer, tmp_path: Path) -> None:
    """A URL broken in both roots: a's report names a's article, not b's."""
    a, b = tmp_path / "a", tmp_path / "b"
    gone = server.url("/status/410?shared=1")
    _article(a, "one.md", 'title: "A"', f'webUrl: "{gone}"')
    _article(b, "two.md", 'title: "B"', f'webUrl: "{gone}"')
    cfg = _config(tmp_path, [a, b])
    assert _monitor(cfg, "check", str(b)).exit_code == 2
    result = _monitor(cfg, "check", str(a), "--format", "json")
    assert result.exit_code == 2, result.output
    assert str(a / "one.md") in result.stdout and str(b) not in result.stdout


def test_missing_root_exits_1_naming_it_and_deletes_nothing(server: FixtureServer, tmp_path: Path) -> None:
    """A mistyped root next to a good one: exit 1, one line naming it, no run row, the inventory as it was."""
    a, _b, cfg = _two_roots(server, tmp_path)
    assert _monitor(cfg, "check", str(a)).exit_code == 0
    missing = tmp_path / "typo"
    engine = open_engine(f"sqlite:///{tmp_path}/scope.db")

    def state() -> tuple[int, int, int]:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(RUNS)).scalar_one(),
                conn.execute(
                    select(func.count()).select_from(ARTICLES).where(ARTICLES.c.deleted_at.is_(None))
                ).scalar_one(),
                conn.execute(select(func.count()).select_from(OCCURRENCES)).scalar_one(),
            )

    before = state()
    for command in ("check", "links"):
        result = _monitor(cfg, command, str(a), str(missing))
        assert result.exit_code == 1, result.output
        assert result.stderr == f"error: corpus root '{missing}': no such file or directory\n"
        assert state() == before
    engine.dispose()


async def test_scheduled_check_with_a_missing_configured_root_fails_loudly(
    server: FixtureServer, tmp_path: Path
) -> None:
    """A configured root that is gone makes the nightly job fail with corpus.root_unavailable and
    job.failed, and `monitor run-job` exit 1: never a healthy night."""
    a, _b, _cfg = _two_roots(server, tmp_path)
    cfg = _config(tmp_path, [a, tmp_path / "unmounted"])
    settings = load_settings(cfg)
    engine = open_engine(settings.database_url)
    with capture_logs() as logs:
        result = await execute("nightly_check", settings, engine, asyncio.Event())
    assert result.status == "failed" and "unmounted" in result.detail
    events = [e["event"] for e in logs]
    assert "corpus.root_unavailable" in events and events[-1] == "job.failed"
    gone = next(e for e in logs if e["event"] == "corpus.root_unavailable")
    assert gone["path"] == (tmp_path / "unmounted").as_posix() and gone["log_level"] == "error"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RUNS)).scalar_one() == 0
    engine.dispose()
    cli = await asyncio.to_thread(_monitor, cfg, "run-job", "nightly_check")
    assert cli.exit_code == 1 and "unmounted" in cli.stderr


def test_links_of_one_root_prints_only_its_inventory(server: FixtureServer, tmp_path: Path) -> None:
    """`links a/` after `links b/`: a's rows, a's summary; `links` of both shows both."""
    a, b, cfg = _two_roots(server, tmp_path)
    assert _monitor(cfg, "links", str(b)).exit_code == 0
    only_a = _monitor(cfg, "links", str(a), "--format", "json")
    assert only_a.exit_code == 0, only_a.output
    doc = json.loads(only_a.stdout)
    assert {o["article"] for o in doc["occurrences"]} == {(a / "one.md").as_posix()}
    assert doc["findings"] == [] and doc["summary"]["files"] == 1 and doc["summary"]["corpus_errors"] == 0
    assert doc["summary"]["distinct_urls"] == 2
    table = _monitor(cfg, "links", str(a))
    assert "own=a" in table.stdout and "own=b" not in table.stdout
    both = _monitor(cfg, "links", "--format", "csv")  # default roots: a/ and b/
    assert "own=a" in both.stdout and "own=b" in both.stdout


def test_resume_goes_on_with_the_roots_the_run_recorded(server: FixtureServer, tmp_path: Path) -> None:
    """`check --resume` with no paths finishes an interrupted `check a/` within a/, not the config's
    roots: only a's URL is fetched and b/ is not even read."""
    a, b, cfg = _two_roots(server, tmp_path)
    assert _monitor(cfg, "check", str(a)).exit_code == 0
    engine = open_engine(f"sqlite:///{tmp_path}/scope.db")
    with engine.begin() as conn:  # as if the run had died before checking a's own URL
        conn.execute(RUNS.update().values(state="interrupted"))
        own = select(URLS.c.id).where(URLS.c.url.contains("own=a")).scalar_subquery()
        conn.execute(RESULTS.delete().where(RESULTS.c.url_id == own))
    server.reset()
    resumed = _monitor(cfg, "check", "--resume", "--format", "json")
    assert resumed.exit_code == 0, resumed.output
    assert [s.target for s in server.requests()] == ["/status/200?own=a"]
    with engine.connect() as conn:
        assert conn.execute(select(RUNS.c.id, RUNS.c.state)).all() == [(1, "finished")]
        assert not conn.execute(select(ARTICLES.c.path).where(ARTICLES.c.path.startswith(b.as_posix()))).all()
    engine.dispose()
