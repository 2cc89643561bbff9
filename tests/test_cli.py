"""The console script: usage errors exit 1 (2 is reserved for "problems found"), help exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def monitor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
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
