"""Triage end to end: `monitor ack`/`unack` and `[[ignore]]` rules, from the CLI, on the fixture server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import create_engine, select
from typer.testing import CliRunner, Result

from monitor.cli import app
from monitor.store.tables import ACKS
from tests.server import FixtureServer
from tests.test_check import write

runner = CliRunner()
ENV = {"MONITOR_USER": "desk-editor", "USER": "someone-else"}


def config_for(tmp_path: Path, *extra: str) -> Path:
    cfg = tmp_path / "c.toml"
    lines = [
        f'database_url = "sqlite:///{tmp_path}/m.db"',
        *extra,
        "[corpus]",
        f'roots = ["{tmp_path}/corpus"]',
        "[safety]",
        "allow_private = true",
        "[http]",
        "backoff_base = 0.01",
        "backoff_max = 0.05",
        "max_retries = 0",
        "[alerts]",
        "alert_after = 1",
        "[logging]",
        'format = "json"',
        f'file = "{tmp_path}/log.jsonl"',
        "stderr = false",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def cli(cfg: Path, *args: str) -> Result:
    return runner.invoke(app, ["-c", str(cfg), *args], env=ENV)


def events(tmp_path: Path, name: str) -> list[dict[str, object]]:
    """Events of the log file so far, and the file emptied for the next run."""
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return [e for e in map(json.loads, lines) if e["event"] == name]


def report_json(cfg: Path) -> dict[str, object]:
    result = cli(cfg, "report", "--format", "json")
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


def test_acknowledged_broken_url_exits_0_is_silent_and_ends_on_recovery(
    server: FixtureServer, tmp_path: Path
) -> None:
    """An acknowledged 404 leaves `check` at exit 0 with no alert event and is reported apart, with
    reason, who and expiry; its recovery ends the acknowledgement, so the next breakage alerts again."""
    url = server.url("/switch/acked")
    write(tmp_path, "a.md", f'---\nwebUrl: "{url}"\nampWebUrl: "{server.url("/status/200")}"\n---\n')
    cfg = config_for(tmp_path)
    server.set_switch("acked", 404)
    assert cli(cfg, "links").exit_code == 0
    acked = cli(cfg, "ack", url, "--reason", "retracted story", "--until", "2999-12-31")
    assert acked.exit_code == 0, acked.output
    assert acked.stdout == f"acknowledged {url}\n"

    check = cli(cfg, "check")
    assert check.exit_code == 0, check.output
    assert events(tmp_path, "link.broken") == []
    doc = report_json(cfg)
    assert doc["broken"]["total"] == 0  # type: ignore[index]
    (item,) = doc["acknowledged"]["urls"]  # type: ignore[index]
    assert item["url"] == url and item["verdict"] == "broken" and item["severity"] == "ignore"
    assert item["reason"].endswith("(acknowledged)")
    ack = item["acknowledged"]
    assert ack["reason"] == "retracted story" and ack["by"] == "desk-editor"
    assert ack["until"] == "3000-01-01T00:00:00+00:00"
    for fmt in ("markdown", "table", "html"):
        text = cli(cfg, "report", "--format", fmt).stdout
        assert "Acknowledged" in text and "retracted story" in text and "desk-editor" in text, fmt
    rows = list(csv.DictReader(io.StringIO(cli(cfg, "report", "--format", "csv").stdout)))
    (row,) = [r for r in rows if r["section"] == "acknowledged"]
    assert "acknowledged: retracted story (by desk-editor" in row["reason"]

    server.set_switch("acked", 200)
    assert cli(cfg, "check").exit_code == 0
    assert events(tmp_path, "link.recovered") == []
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    with engine.connect() as conn:
        assert conn.execute(select(ACKS)).all() == []  # recovery ended it
    assert report_json(cfg)["acknowledged"]["total"] == 0  # type: ignore[index]

    server.set_switch("acked", 404)
    again = cli(cfg, "check")
    assert again.exit_code == 2
    assert [e["url"] for e in events(tmp_path, "link.broken")] == [url]


def test_expired_acknowledgement_counts_again_and_unack_ends_one(
    server: FixtureServer, tmp_path: Path
) -> None:
    """An acknowledgement past its --until no longer silences; `unack` ends one now; bad input exits 1."""
    url = server.url("/status/404")
    write(tmp_path, "a.md", f'---\nwebUrl: "{url}"\n---\n')
    cfg = config_for(tmp_path)
    assert cli(cfg, "links").exit_code == 0
    assert cli(cfg, "ack", url, "--reason", "x", "--until", "2000-01-01").exit_code == 1
    assert cli(cfg, "ack", url, "--reason", "  ").exit_code == 1
    unknown = cli(cfg, "ack", server.url("/nowhere"), "--reason", "x")
    assert unknown.exit_code == 1 and "unknown URL" in unknown.output
    assert cli(cfg, "ack", url, "--reason", "paywall").exit_code == 0
    assert cli(cfg, "check").exit_code == 0
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    with engine.begin() as conn:  # as if --until had passed since
        conn.execute(ACKS.update().values(until=ACKS.c.at))
    assert cli(cfg, "check").exit_code == 2
    assert cli(cfg, "ack", url, "--reason", "paywall").exit_code == 0
    assert cli(cfg, "unack", url).exit_code == 0
    assert cli(cfg, "unack", url).exit_code == 1  # nothing left to end
    assert cli(cfg, "check").exit_code == 2


def test_ignore_rule_skips_without_a_request_and_names_the_rule(
    server: FixtureServer, tmp_path: Path
) -> None:
    """A URL an ignore rule matches gets verdict skipped with the rule in its reason and is never
    requested; an expired rule no longer applies."""
    ignored, expired = server.url("/status/404?paywall=1"), server.url("/status/410?old=1")
    write(tmp_path, "a.md", f'---\nwebUrl: "{ignored}"\nampWebUrl: "{expired}"\n---\n')
    cfg = config_for(
        tmp_path,
        "[[ignore]]",
        'name = "partner-paywall"',
        'url = "*paywall=*"',
        'reason = "agreed with the desk"',
        "[[ignore]]",
        'host = "127.0.0.*"',
        'url = "*old=1"',
        "until = 2020-01-31",
    )
    check = cli(cfg, "check")
    assert check.exit_code == 2, check.output  # the expired rule's 410 still counts
    assert server.requests("/status/404") == []
    assert len(server.requests("/status/410")) >= 1
    urls = {item["url"]: item for item in report_json(cfg)["broken"]["urls"]}  # type: ignore[index]
    assert set(urls) == {expired}
    history = json.loads(cli(cfg, "history", ignored, "--json").stdout)
    (last,) = history["timeline"]
    assert last["verdict"] == "skipped" and last["severity"] == "ignore"
    assert last["reason"] == "ignored by rule 'partner-paywall' (url *paywall=*): agreed with the desk"
