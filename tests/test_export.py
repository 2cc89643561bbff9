"""`monitor export` end to end: a real run on the fixture server, exported as JSON Lines (validated
against reports/export.schema.json) and as CSV, with ok URLs, redirects, images and shared URLs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner, Result

from monitor.cli import app
from reports.export import CSV_COLUMNS
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer

runner = CliRunner()
SCHEMA = json.loads((Path(__file__).parent.parent / "reports" / "export.schema.json").read_text())
JPEG = "/image/exif-orientation-examples/Landscape_1.jpg"  # 1800x1200, from tests/data
pytestmark = pytest.mark.usefixtures("plain_structlog")  # in-process runs configure logging


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/export.db"
        return
    with pg_schema_url() as url:
        yield url


def _checked(server: FixtureServer, tmp_path: Path, db_url: str) -> Path:
    """Run `check` on two articles sharing a URL; returns the config."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    u = server.url
    (corpus / "a.md").write_text(
        f'---\ntitle: "A"\nwebUrl: "{u("/status/200")}"\nampWebUrl: "{u("/status/404")}"\n'
        f'originalUrl: "{u("/redirect-to/301?to=/status/200")}"\n'
        f'images:\n  - url: "{u(JPEG)}"\n    width: 900\n    height: 600\n---\n'
        f"See [it]({u('/status/404')}).\n",
        encoding="utf-8",
    )
    (corpus / "b.md").write_text(f'---\ntitle: "B"\nwebUrl: "{u("/status/404")}"\n---\n', encoding="utf-8")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'database_url = "{db_url}"\n[corpus]\nroots = ["{corpus}"]\n[safety]\nallow_private = true\n'
        '[http]\nmax_retries = 0\n[logging]\nformat = "json"\n',
        encoding="utf-8",
    )
    assert _monitor(cfg, "check").exit_code == 2
    return cfg


def _monitor(cfg: Path, *args: str) -> Result:
    return runner.invoke(app, ["-c", str(cfg), *args])


def test_jsonl_export_has_every_url_with_its_places(
    server: FixtureServer, tmp_path: Path, db_url: str
) -> None:
    """Header then one valid record per distinct URL: ok ones too, a broken URL with all three places."""
    cfg = _checked(server, tmp_path, db_url)
    result = _monitor(cfg, "export", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for line in lines:
        validator.validate(line)
    header, records = lines[0], {r["url"]: r for r in lines[1:]}
    assert header["schema"] == "link-media-monitor/export" and header["version"] == 1
    assert header["run"]["state"] == "finished" and header["run"]["roots"] == [str(tmp_path / "corpus")]
    assert len(lines) - 1 == len(records) == 4  # distinct URLs, ok ones included

    ok = records[server.url("/status/200")]
    assert (ok["verdict"], ok["severity"], ok["http_status"]) == ("ok", "ignore", 200)
    assert [(o["article"].rsplit("/", 1)[1], o["location"]) for o in ok["occurrences"]] == [
        ("a.md", "webUrl")
    ]

    broken = records[server.url("/status/404")]
    assert broken["verdict"] == "broken" and broken["severity"] == "error" and broken["http_status"] == 404
    places = sorted((o["article"].rsplit("/", 1)[1], o["location"], o["role"]) for o in broken["occurrences"])
    assert places == [
        ("a.md", "ampWebUrl", "amp"),
        ("a.md", "body:1", "body_link"),
        ("b.md", "webUrl", "web"),
    ]

    moved = records[server.url("/redirect-to/301?to=/status/200")]
    assert moved["verdict"] == "moved_permanently" and moved["final_url"] == server.url("/status/200")
    assert moved["redirects"][0]["status"] == 301 and moved["attempts"] >= 1

    image = records[server.url(JPEG)]
    assert image["kind"] == "image" and image["image"] == {
        "format": "jpeg",
        "size": {"width": 1800, "height": 1200},
    }
    (place,) = image["occurrences"]
    assert place["location"] == "images[0].url" and place["declared"] == {"width": 900, "height": 600}
    assert place["size_check"] == {"verdict": "scaled", "actual": {"width": 1800, "height": 1200}}
    assert image["bytes_read"] > 0 and image["elapsed_ms"] >= 0


def test_csv_export_to_a_file_one_row_per_url(server: FixtureServer, tmp_path: Path, db_url: str) -> None:
    """CSV in the documented columns, written to --output; the places are a JSON cell."""
    cfg = _checked(server, tmp_path, db_url)
    target = tmp_path / "out" / "run.csv"
    result = _monitor(cfg, "export", "--run", "1", "--format", "csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"4 URLs written to {target}\n"
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    by_url = {r["url"]: r for r in rows}
    broken = by_url[server.url("/status/404")]
    assert (broken["verdict"], broken["http_status"], broken["occurrence_count"]) == ("broken", "404", "3")
    assert {o["location"] for o in json.loads(broken["occurrences"])} == {"ampWebUrl", "body:1", "webUrl"}
    assert by_url[server.url("/status/200")]["verdict"] == "ok"
    image = by_url[server.url(JPEG)]
    assert (image["image_format"], image["image_width"], image["image_height"]) == ("jpeg", "1800", "1200")
    moved = by_url[server.url("/redirect-to/301?to=/status/200")]
    assert json.loads(moved["redirects"])[0]["status"] == 301
    assert not list(target.parent.glob("*.partial"))


def test_export_of_a_missing_run_exits_1(server: FixtureServer, tmp_path: Path, db_url: str) -> None:
    cfg = _checked(server, tmp_path, db_url)
    result = _monitor(cfg, "export", "--run", "99")
    assert result.exit_code == 1 and result.stderr == "error: no run with id 99\n"
