"""The console script: usage errors exit 1 (2 is reserved for "problems found"), help exits 0, and
`monitor report` picks the run, sections and list cap it is asked for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from monitor.cli import app
from monitor.store.db import open_engine
from reports import SECTIONS
from tests.history_fixture import URLS, build_history

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def monitor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script of this checkout (not whichever copy is installed)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_unknown_option_exits_1_without_traceback(tmp_path: Path) -> None:
    """A misspelt option is a usage error: exit 1, a short message, no traceback."""
    result = monitor("check", "--no-such-option", cwd=tmp_path)
    assert result.returncode == 1
    assert "No such option" in result.stderr and "Traceback" not in result.stderr


def test_help_and_version_exit_0(tmp_path: Path) -> None:
    """--help lists every command and --version prints the version, both with exit 0."""
    help_ = monitor("--help", cwd=tmp_path)
    assert help_.returncode == 0
    for command in ("links", "check", "report", "history", "status", "schedule", "jobs", "run-job", "worker"):
        assert command in help_.stdout
    version = monitor("--version", cwd=tmp_path)
    assert version.returncode == 0 and "link-media-monitor" in version.stdout


def test_problems_exit_2_and_clean_runs_exit_0(tmp_path: Path) -> None:
    """A check that finds an invalid URL exits 2; links on the same corpus exits 0."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text('---\nwebUrl: "not a url"\n---\n')
    db = f"sqlite:///{tmp_path}/m.db"
    assert monitor("--database-url", db, "links", str(corpus), "--summary", cwd=tmp_path).returncode == 0
    check = monitor("--database-url", db, "--log-format", "json", "check", str(corpus), cwd=tmp_path)
    assert check.returncode == 2, check.stderr


def test_runs_fail_refuses_what_it_cannot_fail(tmp_path: Path) -> None:
    """`runs --fail` needs a RUN_ID, `--reason` needs `--fail`, and an unknown or local run exits 1."""
    db = f"sqlite:///{tmp_path}/m.db"
    no_id = monitor("--database-url", db, "runs", "--fail", cwd=tmp_path)
    assert no_id.returncode == 1 and "--fail needs a RUN_ID" in no_id.stderr
    stray = monitor("--database-url", db, "runs", "--reason", "x", cwd=tmp_path)
    assert stray.returncode == 1 and "--reason goes with --fail" in stray.stderr
    unknown = monitor("--database-url", db, "runs", "7", "--fail", cwd=tmp_path)
    assert unknown.returncode == 1 and "no run 7" in unknown.stderr and "Traceback" not in unknown.stderr


# --- `monitor report` over a stored three-run history ----------------------------------------------


@pytest.fixture(scope="module")
def history_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose database holds the standard history (runs 1-3, see tests/history_fixture.py)."""
    folder = tmp_path_factory.mktemp("report-cli")
    engine = open_engine(f"sqlite:///{folder}/history.db")
    build_history(engine)
    engine.dispose()
    config = folder / "monitor.toml"
    config.write_text(f'database_url = "sqlite:///{folder}/history.db"\n', encoding="utf-8")
    return config


def report(config: Path, *args: str) -> Result:
    return runner.invoke(app, ["-c", str(config), "report", *args])


def _headings(markdown: str) -> list[str]:
    return re.findall(r"^## (.+?)(?: \(.*\))?$", markdown, flags=re.M)


def test_report_run_shows_that_run(history_config: Path) -> None:
    """--run N reports run N: its broken URLs are listed, those broken only in another run are not."""
    gone, back = URLS["gone"][0], URLS["back"][0]  # broken only in run 3, resp. only in runs 1 and 2
    first = report(history_config, "--run", "1", "-f", "json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    listed = {u["url"] for u in doc["broken"]["urls"]}
    assert doc["run"]["id"] == 1 and back in listed and gone not in listed
    latest = report(history_config, "--run", "latest", "-f", "markdown")
    assert latest.exit_code == 0 and "# Link and media report: run 3" in latest.stdout
    assert f"<{gone}>" in latest.stdout and back not in latest.stdout.split("## Changes")[0]


def test_report_run_that_does_not_exist_exits_1(history_config: Path) -> None:
    """An unknown run id or a word other than 'latest' is one line on stderr and exit 1."""
    missing = report(history_config, "--run", "99")
    assert missing.exit_code == 1 and missing.stderr == "error: no run with id 99\n"
    word = report(history_config, "--run", "first")
    assert word.exit_code == 1 and "--run must be a run id or 'latest'" in word.stderr


def test_report_section_shows_only_that_section(history_config: Path) -> None:
    """--section (repeatable) renders only the chosen sections, in report order."""
    one = report(history_config, "--section", "moved", "-f", "markdown")
    assert one.exit_code == 0, one.output
    assert _headings(one.stdout) == ["Moved permanently"]
    assert URLS["moved"][0] in one.stdout and URLS["gone"][0] not in one.stdout
    two = report(history_config, "-s", "trend", "-s", "broken", "-f", "json")
    assert two.exit_code == 0, two.output
    doc = json.loads(two.stdout)
    assert doc["sections"] == ["broken", "trend"] and {"summary", "moved", "images"}.isdisjoint(doc)


def test_report_unknown_section_is_a_clear_error(tmp_path: Path, history_config: Path) -> None:
    """An unknown section name exits 1 naming it and every valid name, without a traceback; the
    --section help lists the same names."""
    bad = monitor("-c", str(history_config), "report", "--section", "broken", "-s", "bogus", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr == f"error: unknown report section(s) bogus; choose from {', '.join(SECTIONS)}\n"
    help_ = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "300"})
    assert f"Only these sections (repeatable): {', '.join(SECTIONS)}." in " ".join(help_.stdout.split())


def test_report_limit_caps_lists_and_says_how_many_are_left_out(history_config: Path) -> None:
    """--limit N lists N URLs per section and says how many more there are; --limit 0 lists all."""
    capped = report(history_config, "-s", "broken", "--limit", "1", "-f", "json")
    assert capped.exit_code == 0, capped.output
    broken = json.loads(capped.stdout)["broken"]
    assert (len(broken["urls"]), broken["total"], broken["omitted"]) == (1, 5, 4)
    text = report(history_config, "-s", "broken", "--limit", "1", "-f", "markdown").stdout
    assert "4 more URLs not listed (raise the report limit to see them)." in text
    assert "Lists are capped at 1 entries." in report(history_config, "--limit", "1", "-f", "html").stdout
    everything = report(history_config, "-s", "broken", "--limit", "0", "-f", "json")
    broken = json.loads(everything.stdout)["broken"]
    assert (len(broken["urls"]), broken["omitted"]) == (5, 0)
    assert "more URLs not listed" not in report(history_config, "-s", "broken", "--limit", "0").stdout
