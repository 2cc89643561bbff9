"""Editing or deleting an article whose images were checked: the inventory keeps the places that stay."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, select

from monitor.store.tables import ARTICLES, OCCURRENCES, SIZE_CHECKS
from tests.server import FixtureServer
from tests.test_check import JPEG, article, write
from tests.test_triage import cli, config_for


def test_editing_or_deleting_an_article_with_checked_images_keeps_checking(
    server: FixtureServer, tmp_path: Path
) -> None:
    """Size checks point at occurrences: editing an article keeps the rows of the places it still has
    (their size history stays attached), and a place or article that goes takes its size checks along,
    so the next check runs (it failed with a foreign-key error before)."""
    cfg = config_for(tmp_path)
    images = f"{JPEG}@1800x1200,{JPEG}?b=1@1800x1200"
    write(tmp_path, "a.md", article(server, webUrl="/status/200", images=images))
    write(tmp_path, "b.md", article(server, webUrl="/status/200?b", images=f"{JPEG}?c=1@1800x1200"))
    assert cli(cfg, "check").exit_code == 0
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")

    def places() -> dict[str, int]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(OCCURRENCES.c.location, OCCURRENCES.c.id)
                .join_from(OCCURRENCES, ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
                .where(ARTICLES.c.path.endswith("a.md"))
            ).all()
        return {location: oid for location, oid in rows}

    before = places()
    write(tmp_path, "a.md", article(server, webUrl="/status/200?x=1", images=f"{JPEG}@100x300"))
    (tmp_path / "corpus" / "b.md").unlink()
    edited = cli(cfg, "check")
    assert edited.exit_code == 0, edited.output
    after = places()
    assert set(after) == {"webUrl", "images[0].url"}
    assert after["images[0].url"] == before["images[0].url"]
    with engine.connect() as conn:
        checks = conn.execute(
            select(SIZE_CHECKS.c.run_id, SIZE_CHECKS.c.verdict).where(
                SIZE_CHECKS.c.occurrence_id == after["images[0].url"]
            )
        ).all()
    assert sorted(checks) == [(1, "match"), (2, "size_mismatch")]
