"""`monitor report --since-run N` / `--since 24h`: what changed since a chosen run, in every format,
from real check runs against the fixture server."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, update

from monitor.clock import utcnow
from monitor.store.tables import RUNS
from tests.server import FixtureServer
from tests.test_check import JPEG, article, write
from tests.test_triage import cli, config_for


def _urls(doc: dict[str, object], key: str) -> list[str]:
    return [item["url"] for item in doc["changes"][key]["urls"]]  # type: ignore[index]


def test_changes_since_a_chosen_run_in_every_format(server: FixtureServer, tmp_path: Path) -> None:
    """Run 1: s1 ok, s2 broken, image declared right. Run 2: s1 breaks, s2 recovers, the image's
    declared size goes wrong. Run 3: nothing new. Against run 2 nothing changed; since run 1 (or
    since a time between runs 1 and 2) the report lists the newly broken, recovered and newly
    mismatched image, in every format, and the HTML report opens on it."""
    s1, s2 = "/switch/since-1", "/switch/since-2"
    cfg = config_for(tmp_path)
    server.set_switch("since-1", 200)
    server.set_switch("since-2", 404)
    write(tmp_path, "a.md", article(server, webUrl=s1, ampWebUrl=s2, images=f"{JPEG}@1800x1200"))
    assert cli(cfg, "check").exit_code == 2
    server.set_switch("since-1", 404)
    server.set_switch("since-2", 200)
    write(tmp_path, "a.md", article(server, webUrl=s1, ampWebUrl=s2, images=f"{JPEG}@100x300"))
    second = cli(cfg, "check")
    assert second.exit_code == 2, second.output
    assert cli(cfg, "check").exit_code == 2

    default = json.loads(cli(cfg, "report", "--format", "json").stdout)
    assert default["changes"]["previous_run_id"] == 2
    assert [_urls(default, k) for k in ("newly_broken", "recovered", "newly_mismatched")] == [[], [], []]

    since = cli(cfg, "report", "--format", "json", "--since-run", "1")
    assert since.exit_code == 0, since.output
    doc = json.loads(since.stdout)
    assert doc["changes"]["previous_run_id"] == 1 and doc["run"]["previous_run_id"] == 1
    assert _urls(doc, "newly_broken") == [server.url(s1)]
    assert _urls(doc, "recovered") == [server.url(s2)]
    assert _urls(doc, "newly_mismatched") == [server.url(JPEG)]
    (place,) = doc["changes"]["newly_mismatched"]["urls"][0]["occurrences"]
    assert place["location"] == "images[0].url" and place["declared"] == {"width": 100, "height": 300}
    assert place["size_check"] == {"verdict": "size_mismatch", "actual": {"width": 1800, "height": 1200}}

    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    with engine.begin() as conn:  # run 1 "last night", runs 2 and 3 this morning
        conn.execute(update(RUNS).where(RUNS.c.id == 1).values(started_at=utcnow() - timedelta(hours=30)))
    by_time = json.loads(cli(cfg, "report", "--format", "json", "--since", "24h").stdout)
    assert by_time["changes"] == doc["changes"]

    markdown = cli(cfg, "report", "--format", "markdown", "--since-run", "1").stdout
    assert "compared with run 1" in markdown
    assert "### Newly broken (1)" in markdown and "### Recovered (1)" in markdown
    assert "### Newly mismatched images (1)" in markdown and "100x300 | 1800x1200" in markdown
    table = cli(cfg, "report", "--format", "table", "--since-run", "1").stdout
    assert "Newly mismatched images (1)" in table and "Newly broken (1)" in table
    rows = list(csv.DictReader(io.StringIO(cli(cfg, "report", "--format", "csv", "--since-run", "1").stdout)))
    sections = {r["section"]: r for r in rows}
    assert sections["changes.newly_broken"]["url"] == server.url(s1)
    assert sections["changes.recovered"]["url"] == server.url(s2)
    mismatched = sections["changes.newly_mismatched"]
    assert (mismatched["verdict"], mismatched["declared"], mismatched["actual"]) == (
        "size_mismatch",
        "100x300",
        "1800x1200",
    )
    html = cli(cfg, "report", "--format", "html", "--since-run", "1").stdout
    assert re.findall(r'<section id="(\w+)"', html)[0] == "changes"  # the default view
    assert "Newly mismatched images" in html and "Compared with run 1" in html


def test_since_errors_exit_1(server: FixtureServer, tmp_path: Path) -> None:
    """A baseline that is not an earlier run with results, a bad duration, or both options: exit 1."""
    cfg = config_for(tmp_path)
    write(tmp_path, "a.md", article(server, webUrl="/status/200"))
    assert cli(cfg, "check").exit_code == 0
    assert cli(cfg, "check").exit_code == 0
    for args, message in (
        (("--since-run", "2"), "not before run 2"),
        (("--since-run", "7"), "not before run 2"),
        (("--run", "2", "--since-run", "0"), "run 0 does not exist"),
        (("--since", "24h"), "no run with results started before"),
        (("--since", "yesterday"), "a duration like 24h"),
        (("--since", "1h", "--since-run", "1"), "not both"),
    ):
        result = cli(cfg, "report", *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
