"""Hostile and malformed input: property tests for the parsers, and hostile text through every output.

The existing property tests cover ``extract`` on random metadata (test_links), ``normalise_url``
(test_urls), ``amp_cache_url`` (test_amp) and the image probe (test_probe); this file adds
``read_article`` on random bytes and YAML-ish text (and the composed read → extract), the
secret-redaction and terminal/spreadsheet helpers, a table of known-nasty YAML, and hostile
titles, paths and URLs end to end through `monitor check`, `report`, `links` and `history`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from monitor.cli import app
from monitor.corpus.discover import CorpusFile
from monitor.corpus.read import read_article
from monitor.links.extract import extract
from monitor.logs import redact_text
from monitor.textsafe import csv_cell, inert
from monitor.types import Article, CorpusError, FindingKind
from monitor.urls import redact_url
from tests.server import FixtureServer
from tests.test_check import config_file, write

MAX_BYTES = 64 * 1024
CORPUS_KINDS = {
    "empty",
    "too_large",
    "binary",
    "not_utf8",
    "no_frontmatter",
    "yaml_syntax",
    "yaml_unsafe_tag",
    "yaml_alias_bomb",
    "not_mapping",
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# C0/C1 controls (bar tab and newline) and bidi overrides: what must never reach a terminal raw.
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LIVE_TAG = re.compile(r"(?<!\\)<(?:script>alert|img src=x|svg onload)")  # a Markdown "\<" is inert


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file rewritten by every example (hypothesis forbids function-scoped fixtures)."""
    return tmp_path_factory.mktemp("hostile") / "article.md"


def read(path: Path, data: bytes) -> Article | CorpusError:
    path.write_bytes(data)
    return read_article(CorpusFile("corpus/article.md", path, len(data), 0), max_bytes=MAX_BYTES)


def assert_sane(result: Article | CorpusError, data: bytes) -> None:
    """A CorpusError has a known kind, a message and a position inside the file; an Article is a mapping."""
    if isinstance(result, CorpusError):
        assert result.kind in CORPUS_KINDS and result.message
        lines = len(re.split(rb"\r\n|\r|\n", data))  # YAML counts a lone CR as a line break too
        assert result.line is None or 1 <= result.line <= lines
        assert result.column is None or result.column >= 1
        return
    assert isinstance(result, Article)
    assert isinstance(result.meta, dict) and all(type(key) is str for key in result.meta)
    assert isinstance(result.body, str) and result.size == len(data)
    assert result.title is None or isinstance(result.title, str)


_YAMLISH = st.sampled_from(
    [
        "\n", "  ", "- ", ": ", "? ", "a", "webUrl", "images", "url", "width", "related", "title",
        "https://e.example/x", "&a ", "*a", "<<: ", "<<: *a", "[", "]", "{", "}", ", ", "'", '"', "\\",
        "|", ">", "#", "!!str ", "!!binary ", "!!python/object:os.system ", "!!set ", "!custom ",
        "%YAML 1.1", "---", "...", "~", "null", "1e309", "0x1F", "2021-13-40", "\t", "\ufeff", "\u2028",
        "\x85", "é", "\ud7ff", "::", "-1", "9" * 30,
    ]
)  # fmt: skip


@PROPERTY
@given(data=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"---\n", b"\xef\xbb\xbf---\r\n"]))
def test_read_article_on_random_bytes_never_raises(scratch: Path, data: bytes, prefix: bytes) -> None:
    """Random bytes, bare or behind an opening '---' (with BOM and CRLF), give an Article or a CorpusError."""
    blob = prefix + data
    assert_sane(read(scratch, blob), blob)


@PROPERTY
@given(
    front=st.lists(_YAMLISH | st.text(max_size=8), max_size=60).map("".join),
    body=st.lists(
        st.sampled_from(["[a](", ")", "![", "<a href='", "'>", "\n", "https://b.example/"]), max_size=12
    ),
    close=st.sampled_from(["\n---\n", "\n---", "\n--- \n", "\n----\n", ""]),
)
def test_yamlish_frontmatter_reads_and_extracts_without_raising(
    scratch: Path, front: str, body: list[str], close: str
) -> None:
    """Random YAML-ish frontmatter never raises in read_article, and whatever Article it gives, extract
    handles too: every unusable URL it finds is an invalid_url finding."""
    data = ("---\n" + front + close + "".join(body)).encode("utf-8", "surrogatepass")
    result = read(scratch, data)
    assert_sane(result, data)
    if isinstance(result, Article):
        occurrences, findings = extract(result)
        invalid = {f.location for f in findings if f.kind is FindingKind.INVALID_URL}
        assert all((o.url is None) == (o.location in invalid) for o in occurrences)


NASTY_YAML = {
    "deep flow nesting": ("a: " + "[" * 100_000, "yaml_syntax"),
    "deep block nesting": ("a:\n" + "".join(" " * i + "-\n" for i in range(2000)), "yaml_syntax"),
    "merge-key alias bomb": (
        "a: &a {x: 1}\n"
        + "".join(
            f"b{i}: &b{i}\n  <<: [{', '.join([f'*b{i - 1}' if i else '*a'] * 10)}]\n" for i in range(30)
        ),
        "yaml_alias_bomb",
    ),
    "20,000 anchors used at once": (
        "".join(f"k{i}: &a{i} [1, 2, 3]\n" for i in range(20_000))
        + "x: ["
        + ", ".join(f"*a{i}" for i in range(20_000))
        + "]\n",
        "yaml_alias_bomb",
    ),
    "python object tag": ("a: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "yaml_unsafe_tag"),
    "impossible timestamp": ("a: 2021-13-45T99:99:99Z\n", "yaml_syntax"),
    "100,000-digit integer": ("a: " + "9" * 100_000 + "\n", "yaml_syntax"),
    "unhashable key": ("? [a, b]\n: 1\n", "yaml_syntax"),
    "second YAML directive": ("%YAML 1.1\n---\na: 1\n", "yaml_syntax"),
    "binary, set and omap tags": ("a: !!binary QUJD\nb: !!set {x, y}\nc: !!omap [a: 1]\n", None),
    "line separators in strings": ('title: "a\\u2028b\\u0085c\\u202e"\nwebUrl: "https://e.example/"\n', None),
}


@pytest.mark.parametrize("name", list(NASTY_YAML))
def test_known_nasty_yaml_is_refused_or_read_quickly(tmp_path: Path, name: str) -> None:
    """Alias bombs, deep nesting, unsafe tags and oversized scalars end in the expected CorpusError
    (or a harmless Article), and extract copes with whatever was read. The alias cap ends a bomb
    with its own kind, so no clock is needed to see that it was stopped."""
    front, kind = NASTY_YAML[name]
    data = f"---\n{front}\n---\nbody\n".encode()
    path = tmp_path / "a.md"
    path.write_bytes(data)
    result = read_article(CorpusFile("a.md", path, len(data), 0), max_bytes=4 * 1024 * 1024)
    if isinstance(result, Article):
        extract(result)
    assert_sane(result, data)
    assert (result.kind if isinstance(result, CorpusError) else None) == kind


# --- redaction and inert text --------------------------------------------------------------------

_SECRET = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=8, max_size=20)


@PROPERTY
@given(
    user=st.text(st.characters(categories=["Ll", "Nd"]), min_size=1, max_size=8),
    secret=_SECRET,
    host=st.sampled_from(["e.example", "127.0.0.1:8080", "[::1]", "xn--bcher-kva.example"]),
    tail=st.sampled_from(["", "/", "/p?q=1", "?x#frag", "/a@b", "/x?token=abc"]),
)
def test_userinfo_never_survives_redaction(user: str, secret: str, host: str, tail: str) -> None:
    """Whatever the URL around it, a userinfo password is gone from redact_url and from log redaction."""
    assume(secret not in host + tail and secret not in user)
    url = f"https://{user}:{secret}@{host}{tail}"
    assert secret not in redact_url(url)
    assert secret not in redact_text(f"fetching {url} failed: {url!r}")


@PROPERTY
@given(st.text())
def test_inert_text_has_no_raw_control_characters_and_csv_cells_never_compute(value: str) -> None:
    """inert leaves no C0/C1 control or bidi override, and no CSV cell starts like a formula."""
    assert RAW_CONTROL.search(inert(value)) is None
    cell = csv_cell(value)
    assert isinstance(cell, str) and not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


# --- hostile text through every output -----------------------------------------------------------

runner = CliRunner()
TITLE = "<script>alert('title')</script>\"onmouseover=alert(1) =cmd|' /C calc'!A0 \x1b[31mRED\x07 \u202eevil"
FORMULA = "=cmd|' /C calc'!A0"
HOSTILE_FILE = '=HYPERLINK("evil.example")<img src=x onerror=alert(1)>\x1b[2J.md'


@pytest.fixture
def hostile_run(server: FixtureServer, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A corpus of hostile titles, file names, URLs and values, checked twice by the real CLI."""
    broken = server.url('/status/404?q=<script>alert(1)</script>&x="onmouseover=alert(2)')
    fields = {
        "title": TITLE,
        "webUrl": broken,
        "ampWebUrl": FORMULA,
        "originalUrl": "javascript:alert(document.cookie)",
    }
    front = "".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items())
    front += f'images:\n  - url: {json.dumps(server.url("/html-as-image"))}\n    width: "<b>{FORMULA}"\n'
    body = f'[x]({server.url("/status/500")}?a=\x1b[2J) <a href="{FORMULA}">y</a>\n'
    write(tmp_path, HOSTILE_FILE, f"---\n{front}---\n{body}")
    write(tmp_path, "<svg onload=alert(1)>.md", "---\ntitle: [\x1b\n---\n")  # a corpus error
    cfg = config_file(tmp_path)
    for _ in range(2):
        result = runner.invoke(app, ["-c", str(cfg), "check", "-f", "markdown"])
        assert result.exit_code == 2, result.output
        assert_inert(result.stdout, markup=True)
    yield cfg, broken


def strings(node: object) -> Iterator[str]:
    """Every string value in a decoded JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def assert_inert(text: str, markup: bool) -> None:
    """No raw control character or bidi override; in markup (HTML, Markdown) no live tag from the corpus."""
    assert RAW_CONTROL.search(text) is None
    assert not markup or LIVE_TAG.search(text) is None


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_reports_render_hostile_text_inert(hostile_run: tuple[Path, str], tmp_path: Path, fmt: str) -> None:
    """`monitor report` in every format keeps hostile titles, paths, URLs and values as inert text."""
    cfg, _ = hostile_run
    out = tmp_path / f"report.{fmt}"
    result = runner.invoke(app, ["-c", str(cfg), "report", "-f", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    if fmt == "json":  # data, not markup: the encoding escapes control characters, values stay as written
        doc = json.loads(text)
        assert re.search(r"[\x00-\x1f]", text.replace("\n", "")) is None
        assert {TITLE, FORMULA} <= set(strings(doc))
        return
    assert_inert(text, markup=fmt in ("html", "markdown"))
    if fmt == "html":
        assert '"onmouseover' not in text and 'href="javascript:' not in text
        assert "&lt;script&gt;alert(&#x27;title&#x27;)" in text
    elif fmt == "csv":
        cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]
        assert "'" + FORMULA in cells
    else:
        assert "\\x1b" in text or fmt == "table"  # the escape shows up visibly, not as a control sequence


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_links_inventory_renders_hostile_text_inert(hostile_run: tuple[Path, str], fmt: str) -> None:
    """`monitor links` lists hostile paths and URLs without raw control characters or live formulas."""
    cfg, _ = hostile_run
    result = runner.invoke(app, ["-c", str(cfg), "links", "-f", fmt])
    assert result.exit_code in (0, 2), result.output
    assert RAW_CONTROL.search(result.stdout) is None
    if fmt == "csv":
        cells = [cell for row in csv.reader(io.StringIO(result.stdout)) for cell in row]
        assert "'" + FORMULA in cells
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]


def test_history_renders_hostile_text_inert(hostile_run: tuple[Path, str]) -> None:
    """`monitor history` of a hostile URL prints its runs and hostile article path inertly."""
    cfg, broken = hostile_run
    result = runner.invoke(app, ["-c", str(cfg), "history", broken])
    assert result.exit_code == 0, result.output
    assert_inert(result.stdout, markup=False)
    assert "HYPERLINK" in result.stdout and "\\x1b[2J" in result.stdout and "HTTP 404" in result.stdout
