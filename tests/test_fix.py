"""`monitor fix`: diffs by default, `--apply` changes exactly the bytes of the fixed values.

End to end against the fixture server (real 301s and real image sizes, plain and quoted
scalars, CRLF), and on copies of real articles of tests/data/articles whose run results are
stored with the history helpers (their URLs are on the internet, which tests never reach).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import create_engine, select

from monitor.corpus.edit import FieldEdit, edit_frontmatter
from monitor.store.tables import ARTICLES, OCCURRENCES, RESULTS
from tests.history_fixture import add_result, add_run, add_size_check
from tests.server import FixtureServer
from tests.test_check import JPEG
from tests.test_triage import cli, config_for

ARTICLES_DIR = Path(__file__).parent / "data" / "articles"


def test_fix_shows_then_applies_exactly_the_fixed_bytes(server: FixtureServer, tmp_path: Path) -> None:
    """A moved link in a plain, a 'single' and a "double" quoted field, and an image declared at a
    wrong size: `fix` shows a diff and writes nothing; `fix --apply --sizes` writes only those
    values (comments, body, CRLF kept); the next check finds nothing left to fix."""
    moved = server.url("/redirect-to/301?to=/status/200")
    final = server.url("/status/200")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    plain = (
        "---\n"
        "title: Plain  # a comment stays\n"
        f"webUrl: {moved}\n"
        "images:\n"
        f"  - url: {server.url(JPEG)}\n"
        "    width: 100   # declared wrong\n"
        "    height: 300\n"
        "---\n"
        f"Body text with the same URL {moved} stays as written.\n"
    ).encode()
    quoted = (
        f'---\r\ntitle: "Quoted"\r\nwebUrl: \'{moved}\'\r\nampWebUrl: "{moved}&v=1"\r\n---\r\n'
        f"Body with [a link]({moved}).\r\n"
    ).encode()
    (corpus / "plain.md").write_bytes(plain)
    (corpus / "quoted.md").write_bytes(quoted)
    cfg = config_for(tmp_path)
    assert cli(cfg, "check").exit_code == 0  # moved is a warning, a size mismatch no error

    shown = cli(cfg, "fix", "--sizes")
    assert shown.exit_code == 0, shown.output
    assert f"-webUrl: {moved}\n+webUrl: {final}\n" in shown.stdout
    sizes = (
        "-    width: 100   # declared wrong\n-    height: 300\n"
        "+    width: 1800   # declared wrong\n+    height: 1200\n"
    )
    assert sizes in shown.stdout
    assert "would change (run with --apply to write): 4 link(s) in 2 file(s)" in shown.stderr
    assert (corpus / "plain.md").read_bytes() == plain and (corpus / "quoted.md").read_bytes() == quoted

    only_links = cli(cfg, "fix", str(corpus / "quoted.md"), "--apply")
    assert only_links.exit_code == 0, only_links.output
    assert "changed: 2 link(s) in 1 file(s)" in only_links.stderr
    final_amp = final  # the redirect drops the query
    assert (corpus / "quoted.md").read_bytes() == (
        f'---\r\ntitle: "Quoted"\r\nwebUrl: \'{final}\'\r\nampWebUrl: "{final_amp}"\r\n---\r\n'
        f"Body with [a link]({moved}).\r\n"
    ).encode()
    assert (corpus / "plain.md").read_bytes() == plain  # outside the given path
    assert f"quoted.md: body:1: edit by hand: {moved} -> {final}" in only_links.stderr  # the body: noted

    applied = cli(cfg, "fix", "--apply", "--sizes")
    assert applied.exit_code == 1, applied.output  # quoted.md changed since the run read it
    assert "quoted.md: changed since run 1 read it; left alone" in applied.stderr
    assert (corpus / "plain.md").read_bytes() == (
        "---\n"
        "title: Plain  # a comment stays\n"
        f"webUrl: {final}\n"
        "images:\n"
        f"  - url: {server.url(JPEG)}\n"
        "    width: 1800   # declared wrong\n"
        "    height: 1200\n"
        "---\n"
        f"Body text with the same URL {moved} stays as written.\n"
    ).encode()
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")]  # no temporary file left

    assert cli(cfg, "check").exit_code == 0
    again = cli(cfg, "fix", "--sizes", "--apply")
    assert again.exit_code == 0 and "changed: 0 link(s) in 0 file(s)" in again.stderr


def _copy_real_articles(tmp_path: Path, count: int) -> list[Path]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sources = sorted(p for p in ARTICLES_DIR.glob("*.md") if "width:" in p.read_text(encoding="utf-8"))[
        :count
    ]
    copies = [corpus / p.name for p in sources]
    for source, copy in zip(sources, copies, strict=True):
        shutil.copyfile(source, copy)
    crlf = copies[0]  # one of them with Windows line endings
    crlf.write_bytes(crlf.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return copies


def test_fix_apply_on_real_articles_changes_only_the_fixed_values(tmp_path: Path) -> None:
    """Real articles (one converted to CRLF): every webUrl/originalUrl moved, every image declared at
    a wrong size; after `fix --apply --sizes` each file differs from its copy only in those values,
    line by line, with every line ending and every other parsed value as before."""
    copies = _copy_real_articles(tmp_path, 6)
    originals = {p: p.read_bytes() for p in copies}
    cfg = config_for(tmp_path)
    assert cli(cfg, "links").exit_code == 0
    engine = create_engine(f"sqlite:///{tmp_path}/m.db")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    expected: dict[str, dict[str, tuple[str, str]]] = {}  # article -> location -> (old, new)
    with engine.begin() as conn:
        run = add_run(conn, now)
        rows = conn.execute(
            select(ARTICLES.c.path, OCCURRENCES.c.id, OCCURRENCES.c.url_id, OCCURRENCES.c.location)
            .add_columns(OCCURRENCES.c.raw_url, OCCURRENCES.c.declared_width, OCCURRENCES.c.declared_height)
            .join_from(OCCURRENCES, ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
            .where(OCCURRENCES.c.url_id.is_not(None))
        ).all()
        done: set[int] = set()
        for n, (path, oid, uid, location, _raw, dw, dh) in enumerate(rows):
            places = expected.setdefault(path, {})
            if location.endswith(("webUrl", "originalUrl")) and not location.endswith("ampWebUrl"):
                if uid not in done:
                    new = f"https://moved.example/{n}/new-home"
                    add_result(
                        conn, run, uid, "moved_permanently", "warning", "HTTP 301", at=now, final_url=new
                    )
                    done.add(uid)
            elif location.endswith(".url") and dw and uid not in done:
                add_result(conn, run, uid, "ok", at=now)
                done.add(uid)
                add_size_check(conn, run, oid, uid, "size_mismatch", (dw, dh), (dw + 7, dh + 3))
                base = location.removesuffix(".url")
                places[f"{base}.width"] = (str(dw), str(dw + 7))
                places[f"{base}.height"] = (str(dh), str(dh + 3))
        moved = dict(
            conn.execute(
                select(RESULTS.c.url_id, RESULTS.c.final_url).where(RESULTS.c.verdict == "moved_permanently")
            ).all()
        )
    for path, _oid, uid, location, raw, _dw, _dh in rows:  # every place of a moved URL gets its final URL
        if uid in moved and moved[uid] != raw:
            expected.setdefault(path, {})[location] = (raw, moved[uid])

    result = cli(cfg, "fix", "--apply", "--sizes")
    assert result.exit_code == 0, result.output
    total_values = sum(len(v) for v in expected.values())
    assert total_values > 20
    for copy in copies:
        old, new = originals[copy], copy.read_bytes()
        changes = expected[str(copy)]
        assert new != old
        _assert_only_values_changed(old, new, changes)


def _assert_only_values_changed(old: bytes, new: bytes, changes: dict[str, tuple[str, str]]) -> None:
    """Line by line: unchanged lines are byte-equal; a changed line is the old line with one old
    value replaced by its new one; line endings are the same; the parsed frontmatter differs only
    at the changed locations."""
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    pairs = {(o.encode(), n.encode()) for o, n in changes.values()}
    changed = 0
    for a, b in zip(old_lines, new_lines, strict=True):
        if a == b:
            continue
        changed += 1
        assert any(a.replace(o, n, 1) == b for o, n in pairs), (a, b)
        assert a.endswith(b"\r\n") == b.endswith(b"\r\n")
    assert changed == len(changes)
    before, after = (yaml.safe_load(x.decode().split("---", 2)[1]) for x in (old, new))
    for location, (_o, n) in changes.items():
        _set(before, location, n)
    assert before == after


def _set(tree: object, location: str, value: str) -> None:
    steps = [m[1] if m[1] else int(m[2]) for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", location)]
    for step in steps[:-1]:
        tree = tree[step]  # type: ignore[index]
    old = tree[steps[-1]]  # type: ignore[index]
    tree[steps[-1]] = type(old)(value)  # type: ignore[index]


def test_edit_refuses_what_it_cannot_edit_in_place() -> None:
    """A block scalar, a changed value or a missing field is refused with a reason; nothing else moves."""
    data = b"---\na: |\n  text\nb: x\nc: [1, 2]\n---\nbody\n"
    result = edit_frontmatter(
        data,
        [
            FieldEdit("a", "text\n", "y"),
            FieldEdit("b", "other", "y"),
            FieldEdit("d", "x", "y"),
            FieldEdit("b", "x", "z #"),
        ],
    )
    assert [reason for _e, reason in result.refused] == [
        "not a one-line value",
        "the value is 'x' now, not 'other'",
        "not a frontmatter field here",
    ]
    assert result.data == b'---\na: |\n  text\nb: "z #"\nc: [1, 2]\n---\nbody\n'  # " #" needs quotes
    assert hashlib.sha256(edit_frontmatter(data, []).data).digest() == hashlib.sha256(data).digest()
