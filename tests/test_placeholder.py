"""Placeholder images: one default picture served at many image URLs (or for many articles) of a
host is a placeholder_image warning, listed in every report format; distinct images are not."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from monitor.cli import app
from tests.server import FixtureServer
from tests.test_check import config_file, write

IMG = "/image/exif-orientation-examples"
runner = CliRunner()


def _article(server: FixtureServer, *images: str) -> str:
    lines = ["---", 'title: "Pictures"', "related:"]
    for path in images:
        lines += [
            "  - webUrl: " + json.dumps(server.url("/site/story")),
            "    images:",
            f'      - url: "{server.url(path)}"',
        ]
    return "\n".join([*lines, "---", ""])


def _image_urls(doc: dict[str, object]) -> dict[str, tuple[str, str]]:
    images = doc["images"]
    assert isinstance(images, dict)
    return {u["url"]: (u["severity"], u["reason"]) for u in images["placeholder"]["urls"]}


def test_placeholder_images_are_found_and_reported(server: FixtureServer, tmp_path: Path) -> None:
    """Three URLs with the same bytes, and one URL that is the image of three articles, are
    placeholders; two copies (below the threshold) and distinct images are not."""
    same = [f"{IMG}/Landscape_1.jpg?v={i}" for i in range(3)]  # a CDN's default behind 3 URLs
    shared = f"{IMG}/Landscape_2.jpg"  # Reuters' rcom-default.png pattern: one URL, many articles
    pair = [f"{IMG}/Landscape_3.jpg?a", f"{IMG}/Landscape_3.jpg?b"]  # only 2: below the threshold
    distinct = [f"{IMG}/Landscape_4.jpg", f"{IMG}/Portrait_1.jpg", f"{IMG}/Landscape_5.jpg?norange=1"]
    write(tmp_path, "a.md", _article(server, *same, *pair, *distinct, shared))
    write(tmp_path, "b.md", _article(server, shared))
    write(tmp_path, "c.md", _article(server, shared))
    cfg = config_file(tmp_path)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--format", "json"])
    assert result.exit_code == 0, result.output  # a warning: the run does not fail
    doc = json.loads(result.stdout)
    found = _image_urls(doc)
    assert set(found) == {server.url(p) for p in [*same, shared]}
    assert {severity for severity, _ in found.values()} == {"warning"}
    assert found[server.url(same[0])][1].startswith(
        "placeholder_image: same bytes as 2 other image URLs of this host"
    )
    assert "one URL used as the image of several articles" in found[server.url(shared)][1]
    assert doc["images"]["placeholder"]["by_host"][0]["urls"] == 4
    for fmt in ("markdown", "csv", "html", "table"):
        out = runner.invoke(app, ["-c", str(cfg), "report", "--format", fmt])
        assert out.exit_code == 0, out.output
        text = out.stdout.replace("placeholder\\_image", "placeholder_image")
        assert text.count("placeholder_image") >= 4, fmt
    off = tmp_path / "off.toml"  # placeholder_min_uses = 0 switches the rule off
    off.write_text(cfg.read_text() + "[images]\nplaceholder_min_uses = 0\n")
    result = runner.invoke(app, ["-c", str(off), "check", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _image_urls(json.loads(result.stdout)) == {}
