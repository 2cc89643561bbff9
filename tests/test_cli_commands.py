"""`monitor status`, `monitor runs` and `monitor db upgrade` end to end: the real fixture server,
real SQLite files and the real PostgreSQL, asserting what the commands print and how they exit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from typer.testing import CliRunner, Result

from monitor.cli import app
from monitor.store.db import create, head_revision, open_engine, upgrade
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer
from tests.test_check import article, config_file, write

runner = CliRunner()
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*"  # an ISO timestamp as `status` prints it


pytestmark = pytest.mark.usefixtures("plain_structlog")  # in-process runs configure logging


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cli.db"
        return
    with pg_schema_url() as url:
        yield url


def monitor(db_url: str, *args: str, cfg: Path | None = None) -> Result:
    """`monitor [-c cfg] --database-url DB ARGS` in this process."""
    config = ["-c", str(cfg)] if cfg is not None else []
    return runner.invoke(app, [*config, "--database-url", db_url, *args])


def corpus(server: FixtureServer, tmp_path: Path) -> Path:
    """One working and one broken page, an invalid URL (a finding) and a file that is not YAML."""
    write(tmp_path, "a.md", article(server, webUrl="/status/200", ampWebUrl="/status/404"))
    write(tmp_path, "b.md", '---\nwebUrl: "not a url"\n---\n')
    write(tmp_path, "c.md", "---\ntitle: [unclosed\n---\n")
    return config_file(tmp_path)


# --- monitor status ------------------------------------------------------------------------------


def test_status_on_an_empty_database(db_url: str) -> None:
    """No run yet, an empty corpus and no problems, in text and JSON; exit 3: no nightly run yet."""
    result = monitor(db_url, "status")
    assert result.exit_code == 3, result.output
    assert result.stdout.splitlines() == [
        "no run yet: `monitor check` runs the first one",
        "corpus: 0 files, 0 distinct URLs, 0 bad files",
        "current problems: none",
        "findings in articles: none",
        "last successful nightly run: never: STALE (older than 26 h)",
    ]
    quiet = monitor(db_url, "status", "--max-age", "0")
    assert quiet.exit_code == 0, quiet.output
    assert "nightly" not in quiet.stdout
    as_json = monitor(db_url, "status", "--json", "--max-age", "0")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "last_run": None,
        "files": 0,
        "urls": 0,
        "problems": {},
        "findings": {},
        "corpus_errors": 0,
        "oldest_unresolved": [],
        "nightly": {"last_nightly_success": None, "age_hours": None, "max_age_hours": 0.0, "stale": False},
    }


def test_status_after_a_run(server: FixtureServer, tmp_path: Path, db_url: str) -> None:
    """The last run's figures, the corpus (bad file and finding included), the broken URL as the
    oldest unresolved breakage; exit 0 although the run found problems."""
    cfg = corpus(server, tmp_path)
    check = monitor(db_url, "check", "-f", "json", cfg=cfg)
    assert check.exit_code == 2, check.output  # a broken link, a finding and a corpus error
    result = monitor(db_url, "status", "--max-age", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        rf"last run 1 \(cli\): finished, started {TIME}, finished {TIME}; 2/2 checked: broken 1, ok 1",
        lines[0],
    ), lines[0]
    assert lines[1:5] == [
        "corpus: 3 files, 2 distinct URLs, 1 bad files",
        "current problems: broken 1",
        "findings in articles: invalid_url 1",
        "oldest unresolved breakage:",
    ]
    assert re.fullmatch(
        rf"  since {TIME} \(1 runs\) broken: {re.escape(server.url('/status/404'))}", lines[5]
    )
    assert len(lines) == 6
    data = json.loads(monitor(db_url, "status", "--json").stdout)
    assert data["last_run"]["id"] == 1 and data["last_run"]["state"] == "finished"
    assert data["last_run"]["counts"] == {"broken": 1, "ok": 1}
    assert (data["last_run"]["checked"], data["last_run"]["total_targets"]) == (2, 2)
    assert (data["files"], data["urls"], data["corpus_errors"]) == (3, 2, 1)
    assert data["problems"] == {"broken": 1} and data["findings"] == {"invalid_url": 1}
    assert [(i["url"], i["verdict"], i["runs"]) for i in data["oldest_unresolved"]] == [
        (server.url("/status/404"), "broken", 1)
    ]


def test_status_exits_3_when_the_last_nightly_success_is_too_old(
    server: FixtureServer, tmp_path: Path, db_url: str
) -> None:
    """A fresh nightly run: exit 0; the same run 30 h old: exit 3 under the 26 h default (config
    or --max-age decide), in both formats. A `monitor check` run is not a nightly run."""
    cfg = corpus(server, tmp_path)
    cfg.write_text(cfg.read_text() + f'[reports]\nfolder = "{tmp_path}/reports"\n')
    assert monitor(db_url, "check", "-f", "json", cfg=cfg).exit_code == 2
    stale = monitor(db_url, "status", "--format", "json", cfg=cfg)
    assert stale.exit_code == 3 and json.loads(stale.stdout)["nightly"]["stale"] is True
    assert monitor(db_url, "run-job", "nightly_check", cfg=cfg).exit_code == 2  # it found problems
    fresh = monitor(db_url, "status", "--format", "json", cfg=cfg)
    assert fresh.exit_code == 0, fresh.output
    nightly = json.loads(fresh.stdout)["nightly"]
    assert nightly["stale"] is False and nightly["max_age_hours"] == 26.0 and nightly["age_hours"] < 1
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE run SET finished_at = :at WHERE trigger = 'schedule'"), {"at": _hours_ago(30)}
        )
    engine.dispose()
    old = monitor(db_url, "status", "--format", "json", cfg=cfg)
    assert old.exit_code == 3, old.output
    assert 29.9 < json.loads(old.stdout)["nightly"]["age_hours"] < 31
    text_out = monitor(db_url, "status", cfg=cfg)
    assert text_out.exit_code == 3 and "STALE (older than 26 h)" in text_out.stdout.splitlines()[-1]
    assert monitor(db_url, "status", "--format", "json", "--max-age", "48", cfg=cfg).exit_code == 0
    with_config = tmp_path / "fresh.toml"
    with_config.write_text(cfg.read_text() + "\n[jobs.nightly_check]\nmax_age_hours = 36.0\n")
    assert monitor(db_url, "status", "--format", "json", cfg=with_config).exit_code == 0


def _hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


# --- monitor runs --------------------------------------------------------------------------------


def test_runs_lists_each_run_with_its_figures(server: FixtureServer, tmp_path: Path, db_url: str) -> None:
    """A full check then a recheck of what failed: newest first, state, trigger, checked/targets."""
    cfg = corpus(server, tmp_path)
    assert monitor(db_url, "runs").stdout.splitlines() == [
        "RUN  STATE  TRIGGER  STARTED (UTC)  SHARDS  CHECKED  REQUEUES"
    ]
    assert monitor(db_url, "check", cfg=cfg).exit_code == 2
    assert monitor(db_url, "check", "--only-failing", cfg=cfg).exit_code == 2
    result = monitor(db_url, "runs")
    assert result.exit_code == 0, result.output
    header, *rows = (line.split() for line in result.stdout.splitlines())
    assert header == ["RUN", "STATE", "TRIGGER", "STARTED", "(UTC)", "SHARDS", "CHECKED", "REQUEUES"]
    assert [row[:3] + row[5:] for row in rows] == [
        ["2", "finished", "recheck", "local", "1/1", "0"],
        ["1", "finished", "cli", "local", "2/2", "0"],
    ]
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", " ".join(row[3:5])), row
    one = monitor(db_url, "runs", "1")
    assert one.exit_code == 0, one.output
    assert [line.split() for line in one.stdout.splitlines()] == [header, rows[1]]


# --- monitor db upgrade --------------------------------------------------------------------------


# every table of the models with its columns, plus Alembic's own
MODELS = {
    **{name: sorted(c.name for c in table.columns) for name, table in SQLModel.metadata.tables.items()},
    "alembic_version": ["version_num"],
}


def _schema(url: str) -> tuple[str, dict[str, list[str]]]:
    """The Alembic revision and every table's columns."""
    engine = create(url)
    try:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        found = inspect(engine)
        return revision, {t: sorted(c["name"] for c in found.get_columns(t)) for t in found.get_table_names()}
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_schema_at_head_and_twice_is_a_no_op(db_url: str) -> None:
    """A new database gets every table of the models at the head revision; a second upgrade
    changes nothing and keeps the rows."""
    first = monitor(db_url, "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert re.fullmatch(r"database \S+ is up to date\n", first.stdout), first.stdout
    revision, tables = _schema(db_url)
    assert revision == head_revision() == "0008c"
    assert tables == MODELS
    engine = create(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run (started_at, state, trigger, config_fingerprint, total_targets, checked,"
                " counts) VALUES ('2026-01-01', 'finished', 'cli', '', 0, 0, '{}')"
            )
        )
    engine.dispose()
    second = monitor(db_url, "db", "upgrade")
    assert second.exit_code == 0 and second.stdout == first.stdout
    assert _schema(db_url) == (revision, tables)
    engine = create(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar_one() == 1
    engine.dispose()


def test_db_upgrade_brings_an_old_database_to_head(db_url: str) -> None:
    """A database left at revision 0002 gets the later columns (alert and report delivery marks)
    and keeps its runs: afterwards its schema is the models' at the head revision."""
    engine = create(db_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO run (id, started_at, state, trigger, config_fingerprint, total_targets,"
                " checked, counts) VALUES (1, '2026-01-01', 'finished', 'cli', '', 0, 0, '{}')"
            )
        )
    engine.dispose()
    revision, tables = _schema(db_url)
    assert revision == "0002" and "reports_written_at" not in tables["run"] and "run_fanout" in tables
    assert "alerts_emitted_at" not in tables["run_fanout"]
    result = monitor(db_url, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"database \S+ is up to date\n", result.stdout), result.stdout
    assert _schema(db_url) == (head_revision(), MODELS)
    engine = create(db_url)
    with engine.connect() as conn:
        # 0004 counts the reports of runs that ended before it as written: they are never replayed
        row = conn.execute(text("SELECT id, state, reports_written_at IS NOT NULL FROM run")).one()
    engine.dispose()
    assert tuple(row) == (1, "finished", True)
