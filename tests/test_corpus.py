"""Corpus stage: discovery order and filtering, and every way a file can fail to be an article."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.corpus.discover import CorpusFile, discover
from monitor.corpus.read import read_article
from monitor.links.extract import extract
from monitor.types import Article, CorpusError

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parent.parent / "examples" / "articles" / "ktla-lapd-facial-recognition.md"
INCLUDE = ["**/*.md", "**/*.markdown"]
MAX = 2 * 1024 * 1024


def _file(path: Path, display: str = "a.md") -> CorpusFile:
    info = path.stat()
    return CorpusFile(display, path, info.st_size, info.st_mtime_ns)


def _read(tmp_path: Path, content: str | bytes, *, max_bytes: int = MAX) -> Article | CorpusError:
    path = tmp_path / "a.md"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return read_article(_file(path), max_bytes=max_bytes)


def _error(tmp_path: Path, content: str | bytes, **kwargs: int) -> CorpusError:
    result = _read(tmp_path, content, **kwargs)
    assert isinstance(result, CorpusError), result
    return result


def _paths(items: Iterator[CorpusFile | CorpusError]) -> list[str]:
    return [item.path for item in items if isinstance(item, CorpusFile)]


def _tree(root: Path, files: list[str]) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\ntitle: t\n---\n")


# --- discover ----------------------------------------------------------------------------


def test_discover_walks_sorted_and_filters_by_include(tmp_path: Path) -> None:
    """Files come out in sorted path order; `**/*.md` matches top-level files; other files are skipped."""
    _tree(tmp_path, ["b.md", "a/z.md", "a/b/c.markdown", "a.md", "notes.txt", "manifest.json", "c/d.md"])
    got = _paths(discover([tmp_path], INCLUDE, []))
    root = tmp_path.as_posix()
    assert got == [f"{root}/{name}" for name in ["a/b/c.markdown", "a/z.md", "a.md", "b.md", "c/d.md"]]


def test_discover_display_path_joins_root_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The display path is the root as given joined with the relative path; '.' adds no prefix."""
    _tree(tmp_path, ["corpus/x/a.md"])
    monkeypatch.chdir(tmp_path)
    assert _paths(discover(["corpus"], INCLUDE, [])) == ["corpus/x/a.md"]
    assert _paths(discover(["corpus/"], INCLUDE, [])) == ["corpus/x/a.md"]
    assert _paths(discover(["."], INCLUDE, [])) == ["corpus/x/a.md"]
    item = next(discover(["corpus"], INCLUDE, []))
    assert isinstance(item, CorpusFile)
    assert item.abs_path == tmp_path / "corpus/x/a.md"
    assert item.size == len("---\ntitle: t\n---\n")
    assert item.mtime_ns == (tmp_path / "corpus/x/a.md").stat().st_mtime_ns


def test_discover_exclude_by_name_and_by_path(tmp_path: Path) -> None:
    """A slash-less exclude matches names at any depth; one with '/' matches the relative path."""
    _tree(tmp_path, ["keep.md", "draft-1.md", "x/draft-2.md", "drafts/a.md", "x/drafts/b.md", "y/c.md"])
    got = _paths(discover([tmp_path], INCLUDE, ["draft-*", "drafts/**", "y/*.md"]))
    root = tmp_path.as_posix()
    assert got == [f"{root}/keep.md", f"{root}/x/drafts/b.md"]


def test_discover_exclude_prunes_directories_without_listing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An excluded directory is never opened, so huge ignored trees cost nothing."""
    _tree(tmp_path, ["a.md", "node_modules/x/y.md", "vendor/z.md"])
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path: str) -> object:
        listed.append(Path(path).name)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    got = _paths(discover([tmp_path], INCLUDE, ["node_modules", "vendor/**"]))
    assert got == [f"{tmp_path.as_posix()}/a.md"]
    assert "node_modules" not in listed and "vendor" not in listed


def test_discover_skips_hidden_entries(tmp_path: Path) -> None:
    """Hidden directories (.git) and hidden files (editor lock files) are not articles."""
    _tree(tmp_path, [".git/x.md", ".hidden.md", "a/.b/c.md", "ok.md"])
    assert _paths(discover([tmp_path], INCLUDE, [])) == [f"{tmp_path.as_posix()}/ok.md"]


def test_discover_glob_character_classes_and_question_mark(tmp_path: Path) -> None:
    """`?` and `[...]` (`!` negates) follow fnmatch, never cross a '/', and bad classes are literal."""
    _tree(tmp_path, ["a1.md", "a2.md", "ab.md", "a/1.md"])
    root = tmp_path.as_posix()
    assert _paths(discover([tmp_path], ["a[0-9].md"], [])) == [f"{root}/a1.md", f"{root}/a2.md"]
    assert _paths(discover([tmp_path], ["a[!1].md"], [])) == [f"{root}/a2.md", f"{root}/ab.md"]
    assert _paths(discover([tmp_path], ["a?1.md"], [])) == []
    assert _paths(discover([tmp_path], ["a[]1].md"], ["[z-a]", "[!"])) == [f"{root}/a1.md"]


def test_discover_streams_directory_by_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first file is yielded before later directories are listed (no full listing up front)."""
    _tree(tmp_path, ["a/1.md", "b/2.md", "c/3.md"])
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path: str) -> object:
        listed.append(Path(path).name)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    items = discover([tmp_path], INCLUDE, [])
    first = next(items)
    assert isinstance(first, CorpusFile) and first.path.endswith("a/1.md")
    assert "b" not in listed and "c" not in listed


def test_discover_root_may_be_a_single_file(tmp_path: Path) -> None:
    """A file named as a root is yielded even when the include patterns would not match it."""
    (tmp_path / "one.txt").write_text("---\n---\n")
    items = list(discover([tmp_path / "one.txt"], INCLUDE, []))
    assert _paths(iter(items)) == [(tmp_path / "one.txt").as_posix()]


def test_discover_missing_root_is_an_error_and_the_rest_continues(tmp_path: Path) -> None:
    """A root that does not exist becomes a CorpusError naming it; other roots are still walked."""
    _tree(tmp_path, ["ok/a.md"])
    items = list(discover([tmp_path / "nope", tmp_path / "ok"], INCLUDE, []))
    assert isinstance(items[0], CorpusError)
    assert items[0].kind == "not_found" and items[0].path == (tmp_path / "nope").as_posix()
    assert _paths(iter(items)) == [(tmp_path / "ok/a.md").as_posix()]


def test_discover_survives_symlink_loops_and_dedupes_overlapping_roots(tmp_path: Path) -> None:
    """A directory symlink to an ancestor ends the walk there; a file seen via two roots comes once."""
    _tree(tmp_path, ["a/b/c.md"])
    (tmp_path / "a/b/loop").symlink_to(tmp_path / "a", target_is_directory=True)
    got = _paths(discover([tmp_path, tmp_path / "a"], INCLUDE, []))
    assert got == [(tmp_path / "a/b/c.md").as_posix()]


def test_discover_follows_symlinked_files_and_reports_broken_ones(tmp_path: Path) -> None:
    """A symlink to a file is read like the file; a dangling one is an `unreadable` error."""
    _tree(tmp_path, ["real/a.md"])
    (tmp_path / "links").mkdir()
    (tmp_path / "links/good.md").symlink_to(tmp_path / "real/a.md")
    (tmp_path / "links/broken.md").symlink_to(tmp_path / "missing.md")
    items = list(discover([tmp_path / "links"], INCLUDE, []))
    errors = [item for item in items if isinstance(item, CorpusError)]
    assert [(e.path, e.kind) for e in errors] == [((tmp_path / "links/broken.md").as_posix(), "unreadable")]
    assert _paths(iter(items)) == [(tmp_path / "links/good.md").as_posix()]


def test_discover_reports_fifo_instead_of_yielding_it(tmp_path: Path) -> None:
    """A FIFO named like an article is an error, never a file to open (it would block)."""
    os.mkfifo(tmp_path / "pipe.md")
    items = list(discover([tmp_path], INCLUDE, []))
    assert [(type(i).__name__, getattr(i, "kind", None)) for i in items] == [("CorpusError", "unreadable")]


# --- read_article: good files ------------------------------------------------------------


def test_read_example_article() -> None:
    """The example article reads with title, typed metadata, hash, size and an empty body."""
    data = EXAMPLE.read_bytes()
    article = read_article(_file(EXAMPLE, "examples/articles/ktla.md"), max_bytes=MAX)
    assert isinstance(article, Article)
    assert article.path == "examples/articles/ktla.md"
    assert article.title is not None and article.title.startswith("Police Commission approves new oversight")
    assert article.sha256 == hashlib.sha256(data).hexdigest()
    assert article.size == len(data)
    assert article.meta["publishedDateTime"] == datetime(2021, 1, 13, 0, 17, tzinfo=UTC)
    assert article.meta["quality"] == 38 and article.meta["published"] is False
    assert isinstance(article.meta["related"], list) and len(article.meta["related"]) == 3
    assert article.body.strip() == ""


@pytest.mark.parametrize("folder", ["articles", "articles-original"])
def test_real_articles_all_read_without_error(folder: str) -> None:
    """Every real article reads cleanly and extracts (read speed is measured by bench/, not here)."""
    files = [item for item in discover([DATA / folder], INCLUDE, [])]
    assert all(isinstance(item, CorpusFile) for item in files)
    assert len(files) == (300 if folder == "articles" else 21)
    for item in files:
        assert isinstance(item, CorpusFile)
        result = read_article(item, max_bytes=MAX)
        assert isinstance(result, Article), str(result)
        extract(result)
        assert result.title


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    """A UTF-8 BOM and CRLF line endings read like plain LF text."""
    article = _read(tmp_path, b"\xef\xbb\xbf---\r\ntitle: Hi\r\nx: 1\r\n---\r\nbody\r\nline 2\r\n")
    assert isinstance(article, Article)
    assert article.meta == {"title": "Hi", "x": 1}
    assert article.body == "body\nline 2\n"


def test_body_starts_on_the_line_after_the_closing_delimiter(tmp_path: Path) -> None:
    """The body keeps its leading blank lines so body line numbers are stable."""
    article = _read(tmp_path, "---\ntitle: t\n---  \n\n[x](https://a.example/)\n")
    assert isinstance(article, Article)
    assert article.body == "\n[x](https://a.example/)\n"


def test_empty_frontmatter_is_an_empty_mapping(tmp_path: Path) -> None:
    """`---` followed directly by `---` is valid frontmatter with no fields."""
    article = _read(tmp_path, "---\n---\nbody\n")
    assert isinstance(article, Article)
    assert article.meta == {} and article.title is None and article.body == "body\n"


def test_non_string_title_and_keys(tmp_path: Path) -> None:
    """A non-string title gives no title; non-string top-level keys become strings."""
    article = _read(tmp_path, "---\ntitle: 42\n2021: year\n---\n")
    assert isinstance(article, Article)
    assert article.title is None
    assert article.meta == {"title": 42, "2021": "year"}


def test_harmless_aliases_and_merge_keys_work(tmp_path: Path) -> None:
    """Ordinary anchors, aliases and `<<` merges build the same values as PyYAML."""
    text = "---\nbase: &b {width: 10}\nimg:\n  <<: *b\n  height: 5\nagain: *b\nplain: <<\n---\n"
    article = _read(tmp_path, text)
    assert isinstance(article, Article)
    assert article.meta["img"] == {"width": 10, "height": 5}
    assert article.meta["again"] == {"width": 10}
    assert article.meta["plain"] == "<<"


# --- read_article: bad files -------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf \n"])
def test_empty_files(tmp_path: Path, content: bytes) -> None:
    """Zero bytes, whitespace only, or a BOM and whitespace are `empty`."""
    assert _error(tmp_path, content).kind == "empty"


def test_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    """A file over the limit is refused from its size: a 64 MiB file allocates almost nothing."""
    path = tmp_path / "big.md"
    with path.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    tracemalloc.start()
    try:
        result = read_article(_file(path), max_bytes=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, CorpusError) and result.kind == "too_large"
    assert "67,108,864 bytes" in result.message
    assert peak < 256 * 1024


def test_limit_is_inclusive(tmp_path: Path) -> None:
    """A file of exactly max_bytes is read; one byte more is too large."""
    content = "---\ntitle: t\n---\n"
    assert isinstance(_read(tmp_path, content, max_bytes=len(content)), Article)
    assert _error(tmp_path, content + "x", max_bytes=len(content)).kind == "too_large"


def test_file_that_grew_after_discovery_is_still_bounded(tmp_path: Path) -> None:
    """The size limit holds even when the discovered size is stale."""
    path = tmp_path / "a.md"
    path.write_text("---\n---\n")
    stale = _file(path)
    path.write_text("---\ntitle: much longer now\n---\n")
    result = read_article(stale, max_bytes=10)
    assert isinstance(result, CorpusError) and result.kind == "too_large"


@pytest.mark.parametrize(
    "content",
    [b"---\ntitle: x\x00\n---\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", bytes(range(1, 9)) * 20],
)
def test_binary_files(tmp_path: Path, content: bytes) -> None:
    """NUL bytes, or mostly control bytes, mean `binary`."""
    assert _error(tmp_path, content).kind == "binary"


def test_latin1_is_not_utf8_with_position(tmp_path: Path) -> None:
    """Latin-1 text is `not_utf8` with the byte offset in the message and line/column."""
    error = _error(tmp_path, "---\ntitle: café\n---\n".encode("latin-1"))
    assert error.kind == "not_utf8"
    assert "byte offset 14" in error.message and "0xe9" in error.message
    assert (error.line, error.column) == (2, 11)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("title: no block\n", "does not start"),
        ("\n---\ntitle: x\n---\n", "does not start"),
        ("# Heading\n\n---\n", "does not start"),
        ("---\ntitle: never closed\n", "never closed"),
        ("---", "never closed"),
    ],
)
def test_no_frontmatter(tmp_path: Path, content: str, message: str) -> None:
    """A missing or unterminated `---` block is `no_frontmatter` at line 1."""
    error = _error(tmp_path, content)
    assert error.kind == "no_frontmatter" and message in error.message
    assert (error.line, error.column) == (1, 1)


@pytest.mark.parametrize(
    ("content", "line", "column", "message"),
    [
        ("---\ntitle: a\nkey: value: other\n---\n", 3, 11, "mapping values are not allowed"),
        ("---\r\ntitle: a\r\nkey: value: other\r\n---\r\n", 3, 11, "mapping values are not allowed"),
        ("\ufeff---\ntitle: a\nkey: value: other\n---\n", 3, 11, "mapping values are not allowed"),
        ("---\ntitle: a\nlist: [1, 2\nnext: x\n---\n", 4, 5, "flow sequence"),
        ('---\ntitle: "a\x07"\n---\n', 2, 10, "U+0007"),
        ("---\na: 1\nb: *nowhere\n---\n", 3, 4, "undefined alias"),
        ("---\na: 1\nwhen: 2021-13-45\n---\n", 3, 7, "month must be in 1..12"),
        ("---\nx: " + "[" * 150 + "]" * 150 + "\n---\n", 2, 104, "nesting depth"),
        ("---\nx: " + "[" * 2000 + "]" * 2000 + "\n---\n", 2, 1003, "nesting depth"),
        ("---\n? [1]\n: x\n---\n", 2, 3, "unhashable key"),
        # YAML also breaks lines at U+2028 / NEL; the position stays the editor's (newlines only)
        ('---\nt: "x\u2028y"\nb: *nowhere\n---\n', 3, 4, "undefined alias"),
        ('---\nt: "x\x85y\u2029z"\nb: *nowhere\n---\n', 3, 4, "undefined alias"),
    ],
)
def test_yaml_syntax_errors_carry_file_line_and_column(
    tmp_path: Path, content: str, line: int, column: int, message: str
) -> None:
    """YAML problems are `yaml_syntax` at the 1-based file position (after the opening `---`)."""
    error = _error(tmp_path, content)
    assert (error.kind, error.line, error.column) == ("yaml_syntax", line, column)
    assert message in error.message
    assert str(error).startswith(f"a.md:{line}:{column}: yaml_syntax: ")


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system", "!custom x"]
)
def test_unsafe_tags_are_refused(tmp_path: Path, tag: str) -> None:
    """Tags SafeLoader cannot build (python objects, local tags) are `yaml_unsafe_tag`, never executed."""
    error = _error(tmp_path, f"---\ntitle: t\nx: {tag}\n---\n")
    assert (error.kind, error.line, error.column) == ("yaml_unsafe_tag", 3, 4)
    assert "is not allowed" in error.message


@pytest.mark.parametrize(
    ("content", "what"),
    [("---\n- a\n- b\n---\n", "list"), ("---\njust text\n---\n", "plain string"), ("---\n42\n---\n", "int")],
)
def test_frontmatter_must_be_a_mapping(tmp_path: Path, content: str, what: str) -> None:
    """A list or scalar frontmatter is `not_mapping`, naming what it is."""
    error = _error(tmp_path, content)
    assert error.kind == "not_mapping" and what in error.message
    assert (error.line, error.column) == (2, 1)


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    """Nine levels of ten aliases (10^9 nodes expanded) are refused in well under a second."""
    lines = ["---", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        refs = ",".join(f"*a{level - 1}" for _ in range(10))
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("---")
    tracemalloc.start()
    try:
        error = _error(tmp_path, "\n".join(lines) + "\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024
    assert error.kind == "yaml_alias_bomb" and "100,000" in error.message
    assert error.line is not None and error.line >= 3


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    """An anchor whose value contains its own alias is refused rather than built as a cycle."""
    error = _error(tmp_path, "---\ntitle: t\nloop: &x [1, *x]\n---\n")
    assert error.kind == "yaml_alias_bomb" and "contains it" in error.message
    assert error.line == 3


def test_moderate_alias_reuse_is_allowed(tmp_path: Path) -> None:
    """Aliases expanding to fewer nodes than the limit are fine (10 x 10 x 10 leaves)."""
    text = "---\na: &a [1,2,3,4,5,6,7,8,9,10]\nb: &b [" + ",".join(["*a"] * 10) + "]\n"
    text += "c: [" + ",".join(["*b"] * 10) + "]\n---\n"
    article = _read(tmp_path, text)
    assert isinstance(article, Article)
    outer = article.meta["c"]
    assert isinstance(outer, list)
    assert sum(len(inner) for middle in outer for inner in middle) == 1000


def test_vanished_file_is_unreadable(tmp_path: Path) -> None:
    """A file deleted between discovery and reading is `unreadable`, naming the OS reason."""
    path = tmp_path / "gone.md"
    path.write_text("---\n---\n")
    item = _file(path)
    path.unlink()
    result = read_article(item, max_bytes=MAX)
    assert isinstance(result, CorpusError) and result.kind == "unreadable"
    assert "No such file" in result.message


def test_directory_or_fifo_in_place_of_file_is_unreadable(tmp_path: Path) -> None:
    """Something that is not a regular file is `unreadable` and never blocks the read."""
    os.mkfifo(tmp_path / "fifo.md")
    for path in (tmp_path, tmp_path / "fifo.md"):
        result = read_article(CorpusFile("x.md", path, 0, 0), max_bytes=MAX)
        assert isinstance(result, CorpusError) and result.kind == "unreadable"
        assert result.message == "not a regular file"


def test_unreadable_directory_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory that cannot be listed becomes an error for that directory; the walk goes on."""
    _tree(tmp_path, ["a/x.md", "b/y.md"])
    real_scandir = os.scandir

    def deny_a(path: str) -> object:
        if Path(path).name == "a":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny_a)
    items = list(discover([tmp_path], INCLUDE, []))
    errors = [(i.path, i.kind, i.message) for i in items if isinstance(i, CorpusError)]
    assert errors == [((tmp_path / "a").as_posix(), "unreadable", "Permission denied")]
    assert _paths(iter(items)) == [(tmp_path / "b/y.md").as_posix()]
