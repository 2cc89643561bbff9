"""The inventory pass: complete, attributed, incremental, and never losing data on bad input."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import CorpusSettings
from monitor.corpus.discover import RootUnavailable
from monitor.run.inventory import sync_inventory
from monitor.store import inventory as store
from monitor.store.db import open_engine
from monitor.store.models import ArticleRow, CorpusErrorRow, OccurrenceRow, UrlRow
from monitor.types import CorpusErrorKind
from tests.pg_schema import pg_schema_url

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "articles" / "ktla-lapd-facial-recognition.md"

ARTICLE = """---
title: "{title}"
webUrl: "https://news.example.com/{slug}"
ampWebUrl: "https://news.example.com/{slug}/amp"
images:
  - url: "https://img.example.com/{slug}.jpg"
    width: 800
    height: 600
related:
  - webUrl: "https://other.example.org/{slug}"
    images:
      - url: "https://img.example.com/shared.png"
        width: 10
        height: 10
---
Body with a [link](https://body.example.net/{slug}).
"""


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path}/inv.db")
        yield eng
        eng.dispose()
        return
    with pg_schema_url() as url:
        eng = open_engine(url)
        yield eng
        eng.dispose()


def _write(folder: Path, slug: str, title: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.md"
    path.write_text(ARTICLE.format(slug=slug, title=title or slug))
    return path


def _count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def _settings(root: Path) -> CorpusSettings:
    return CorpusSettings(roots=[str(root)])


def test_real_article_inventory(engine: Engine, tmp_path: Path) -> None:
    """The real example article yields 17 attributed occurrences of 16 distinct URLs and no findings."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(EXAMPLE, corpus)
    report = sync_inventory(engine, _settings(corpus))
    assert (report.parsed, report.errors) == (1, [])
    c = store.counts(engine)
    assert (c.files, c.occurrences, c.distinct_urls, c.invalid_urls, c.amp_mismatches) == (1, 17, 16, 0, 0)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                OccurrenceRow.location, OccurrenceRow.role, OccurrenceRow.declared_width, UrlRow.kind
            ).join(UrlRow, OccurrenceRow.url_id == UrlRow.id)
        ).all()
    by_loc = {r[0]: r for r in rows}
    assert by_loc["related[2].images[0].url"][1:] == ("image", 1200, "image")
    assert by_loc["related[1].ampWebUrl"][1] == "amp"
    assert by_loc["cdnAmpWebUrl"][1] == "cdn_amp"


def test_shared_urls_are_one_target(engine: Engine, tmp_path: Path) -> None:
    """A URL used by many articles is one url row with one occurrence per place."""
    for i in range(5):
        _write(tmp_path / "c", f"a{i}")
    sync_inventory(engine, _settings(tmp_path / "c"))
    with engine.connect() as conn:
        shared = conn.execute(
            select(UrlRow.id).where(UrlRow.url == "https://img.example.com/shared.png")
        ).all()
        assert len(shared) == 1
        n = conn.execute(select(func.count()).where(OccurrenceRow.url_id == shared[0][0])).scalar_one()
    assert n == 5


def test_second_run_reparses_only_changes_and_notices_deletions(engine: Engine, tmp_path: Path) -> None:
    """Unchanged files are not re-parsed; edits are; deleted files leave the inventory but keep their row."""
    corpus = tmp_path / "c"
    paths = [_write(corpus, f"a{i}") for i in range(4)]
    first = sync_inventory(engine, _settings(corpus))
    assert (first.parsed, first.unchanged) == (4, 0)
    second = sync_inventory(engine, _settings(corpus))
    assert (second.parsed, second.unchanged, second.deleted) == (0, 4, 0)
    _write(corpus, "a1", title="edited")
    os.utime(paths[1], ns=(1, 1))  # a changed mtime with the same size must still be noticed by hash
    paths[2].unlink()
    third = sync_inventory(engine, _settings(corpus))
    assert (third.parsed, third.unchanged, third.deleted) == (1, 2, 1)
    assert _count(engine, ArticleRow.__table__, ArticleRow.deleted_at.is_not(None)) == 1
    assert store.counts(engine).files == 3
    assert _count(engine, OccurrenceRow.__table__) == 3 * 6
    # only touched mtime: hash equal → not re-parsed
    os.utime(paths[0], ns=(2, 2))
    fourth = sync_inventory(engine, _settings(corpus))
    assert (fourth.parsed, fourth.unchanged) == (0, 3)


def test_bad_files_are_reported_and_do_not_stop_the_run(engine: Engine, tmp_path: Path) -> None:
    """Malformed files become corpus errors naming path and reason; good files are still inventoried."""
    corpus = tmp_path / "c"
    _write(corpus, "good")
    (corpus / "bad.md").write_text("---\ntitle: [unclosed\n---\n")
    (corpus / "empty.md").write_text("")
    (corpus / "latin.md").write_bytes(b"---\ntitle: caf\xe9\n---\n")
    report = sync_inventory(engine, _settings(corpus))
    kinds = {Path(e.path).name: e.kind for e in report.errors}
    assert kinds == {"bad.md": "yaml_syntax", "empty.md": "empty", "latin.md": "not_utf8"}
    bad = next(e for e in report.errors if e.path.endswith("bad.md"))
    assert bad.line is not None
    assert _count(engine, CorpusErrorRow.__table__) == 3
    assert store.counts(engine).occurrences == 6
    # unchanged bad files are not re-read, and the errors stay listed
    again = sync_inventory(engine, _settings(corpus))
    assert again.errors == [] and _count(engine, CorpusErrorRow.__table__) == 3
    # fixing a file clears its error
    _write(corpus, "bad")
    sync_inventory(engine, _settings(corpus))
    assert _count(engine, CorpusErrorRow.__table__) == 2


def test_corpus_error_kinds_are_stored_as_their_plain_values(engine: Engine, tmp_path: Path) -> None:
    """``CorpusErrorKind`` is a StrEnum: the kind column holds "yaml_syntax", not the member name,
    as databases written before the enum existed do."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "bad.md").write_text("---\ntitle: [unclosed\n---\n")
    (corpus / "list.md").write_text("---\n- a\n---\n")
    report = sync_inventory(engine, _settings(corpus))
    assert {type(e.kind) for e in report.errors} == {CorpusErrorKind}
    with engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT path, kind FROM corpus_error").all())
    assert {Path(p).name: kind for p, kind in stored.items()} == {
        "bad.md": "yaml_syntax",
        "list.md": "not_mapping",
    }
    assert {type(kind) for kind in stored.values()} == {str}


def test_missing_root_never_deletes(engine: Engine, tmp_path: Path) -> None:
    """A root that disappears (unmounted share) stops the pass with an error naming it, before
    anything is read or deleted: its articles stay in the inventory."""
    corpus = tmp_path / "c"
    _write(corpus, "a")
    sync_inventory(engine, _settings(corpus))
    shutil.rmtree(corpus)
    with pytest.raises(RootUnavailable) as raised:
        sync_inventory(engine, _settings(corpus))
    assert raised.value.path == corpus.as_posix() and raised.value.reason == "no such file or directory"
    assert store.counts(engine).occurrences == 6 and store.counts(engine).files == 1


def test_scanning_one_root_leaves_others_alone(engine: Engine, tmp_path: Path) -> None:
    """Checking a sub-folder does not mark the rest of the corpus deleted."""
    _write(tmp_path / "c" / "x", "a")
    _write(tmp_path / "c" / "y", "b")
    sync_inventory(engine, _settings(tmp_path / "c"))
    report = sync_inventory(engine, _settings(tmp_path / "c"), [str(tmp_path / "c" / "x")])
    assert report.deleted == 0 and store.counts(engine).files == 2


def test_real_corpus_reads_without_errors(tmp_path: Path) -> None:
    """All 300 real articles and the originals are inventoried with zero corpus errors."""
    engine = open_engine(f"sqlite:///{tmp_path}/real.db")
    data = ROOT / "tests" / "data"
    report = sync_inventory(
        engine, CorpusSettings(roots=[str(data / "articles"), str(data / "articles-original")])
    )
    assert report.errors == [] and report.parsed == 321
    assert store.counts(engine).distinct_urls > 1500


runner = CliRunner()


def test_cli_links_json_and_summary(tmp_path: Path) -> None:
    """`monitor links --format json` prints a parseable inventory with the summary counts."""
    shutil.copy(EXAMPLE, tmp_path)
    db = f"sqlite:///{tmp_path}/cli.db"
    result = runner.invoke(app, ["--database-url", db, "links", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["distinct_urls"] == 16 and len(doc["occurrences"]) == 17
    assert doc["schema"] == "link-media-monitor/inventory"


def test_cli_csv_output_file(tmp_path: Path) -> None:
    """`--format csv --output FILE` writes one row per occurrence with stable columns."""
    shutil.copy(EXAMPLE, tmp_path)
    out = tmp_path / "inv.csv"
    db = f"sqlite:///{tmp_path}/cli.db"
    result = runner.invoke(app, ["--database-url", db, "links", str(tmp_path), "-f", "csv", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("article,location,role,related,url") and len(lines) == 18


def test_cli_config_error_is_one_line(tmp_path: Path) -> None:
    """A config error prints one line naming the key and exits 1, without a traceback."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\nconcurrency = -1\n")
    result = runner.invoke(app, ["--config", str(cfg), "links"])
    assert result.exit_code == 1
    assert "http.concurrency" in result.output and "Traceback" not in result.output


def test_cli_bad_database_url_is_one_line(tmp_path: Path) -> None:
    """An unusable database URL is reported in one line with exit code 1."""
    result = runner.invoke(app, ["--database-url", "nosuchdb://x", "links", str(tmp_path)])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output


def test_cli_outputs_never_show_credentials(tmp_path: Path) -> None:
    """Credentials written in an article's URL stay out of every `monitor links` format."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.md").write_text('---\nwebUrl: "https://editor:s3cret@news.example.com/a"\n---\n')
    db = f"sqlite:///{tmp_path}/cli.db"
    for fmt in ("table", "json", "csv"):
        result = runner.invoke(app, ["--database-url", db, "links", str(corpus), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output and "news.example.com/a" in result.output
