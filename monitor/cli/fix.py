"""`monitor fix [PATH…] [--apply] [--sizes] [--archive]`: turn a run's findings into edits of the articles.

By default it prints a unified diff per article and changes nothing. ``--apply`` writes the
edits: only the bytes of the changed values change (``monitor.corpus.edit``), each file is
replaced atomically (a temporary file in the same folder, then a rename), and a file whose
content is not what the run read (its SHA-256 differs) is never touched. The next run's
inventory picks the change up.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import sys
import tempfile
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.app import UsageError, app, context_of, engine_for, user_errors
from monitor.corpus.edit import EditError, FieldEdit, edit_frontmatter, path_steps
from monitor.store.fixes import Fix, fixes_for, latest_run
from monitor.textsafe import inert


@app.command()
def fix(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Only articles under these files or folders (default: all).")
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply/--no-apply", show_default=False, help="Write the changes (default: only show diffs)."
        ),
    ] = False,
    sizes: Annotated[
        bool,
        typer.Option(
            "--sizes/--no-sizes",
            show_default=False,
            help="Also set declared image width/height to the real size.",
        ),
    ] = False,
    archive: Annotated[
        bool,
        typer.Option(
            "--archive/--no-archive",
            show_default=False,
            help="Also replace broken and soft_404 links with their archived copy (when one is known).",
        ),
    ] = False,
    run: Annotated[
        int | None,
        typer.Option("--run", metavar="ID", help="Run whose results to use (default: the latest)."),
    ] = None,
) -> None:
    """Fix links in the articles: moved_permanently links get their final URL, with --sizes
    mismatched images their real width and height, and with --archive dead links their archived copy.

    Exit code 0 when every fix was shown (or written), 1 when a file could not be fixed (changed
    since the run, unreadable, a value that cannot be edited in place) or on usage errors.
    """
    c = context_of(ctx)
    with user_errors(c):
        engine = engine_for(c.settings())
        if c.settings().http.remap:
            raise UsageError("http.remap is set: final URLs are the mirror's, not what to write in articles")
        run_id = run if run is not None else latest_run(engine)
        if run_id is None:
            raise UsageError("no check run in the database yet")
        wanted = [p.resolve() for p in paths or []]
        found = fixes_for(engine, run_id, sizes=sizes, archive=archive)
        fixes = [f for f in found if _under(Path(f.article), wanted)]
        code = _fix_files(fixes, apply=apply, run_id=run_id)
    raise typer.Exit(code)


def _under(article: Path, roots: Sequence[Path]) -> bool:
    if not roots:
        return True
    where = article.resolve()
    return any(where == root or root in where.parents for root in roots)


def _place(location: str) -> str:
    """The link a fixed value belongs to: an image's width and height are one link with its url."""
    return location.rsplit(".", 1)[0] if location.endswith((".width", ".height")) else location


def _fix_files(fixes: list[Fix], *, apply: bool, run_id: int) -> int:
    """Show (and with ``apply`` write) each article's edits; exit code 1 when any could not be made."""
    failed, files, links = 0, 0, 0
    for article, group in groupby(fixes, key=lambda f: f.article):
        items = []
        for f in group:
            if path_steps(f.location) is None:  # the body or an HTML field: no scalar to replace
                print(
                    f"note: {inert(article)}: {f.location}: edit by hand: {inert(f.old)} -> {inert(f.new)}",
                    file=sys.stderr,
                )
            else:
                items.append(f)
        if not items:
            continue
        path = Path(article)
        try:
            data = path.read_bytes()
        except OSError as exc:
            failed += 1
            print(f"error: {inert(article)}: cannot read ({exc.strerror})", file=sys.stderr)
            continue
        if hashlib.sha256(data).hexdigest() != items[0].sha256:
            failed += 1
            print(f"error: {inert(article)}: changed since run {run_id} read it; left alone", file=sys.stderr)
            continue
        edits = [FieldEdit(f.location, f.old, f.new) for f in items]
        try:
            result = edit_frontmatter(data, edits)
        except EditError as exc:
            failed += 1
            print(f"error: {inert(article)}: {exc}", file=sys.stderr)
            continue
        for edit, reason in result.refused:
            failed += 1
            print(f"error: {inert(article)}: {edit.location}: {reason}", file=sys.stderr)
        if not result.applied:
            continue
        _show_diff(article, data, result.data)
        if apply:
            _write_atomically(path, result.data)
        files += 1
        links += len({_place(e.location) for e in result.applied})
    verb = "changed" if apply else "would change (run with --apply to write)"
    tail = f"; {failed} could not be fixed" if failed else ""
    print(f"{verb}: {links} link(s) in {files} file(s){tail}", file=sys.stderr)
    return 1 if failed else 0


def _show_diff(article: str, old: bytes, new: bytes) -> None:
    a = old.decode("utf-8").splitlines(keepends=True)
    b = new.decode("utf-8").splitlines(keepends=True)
    for line in difflib.unified_diff(a, b, fromfile=f"a/{article}", tofile=f"b/{article}"):
        sys.stdout.write(inert(line.rstrip("\r\n")) + "\n")


def _write_atomically(path: Path, data: bytes) -> None:
    """A temporary file beside the article, flushed to disk, then renamed over it (mode kept)."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
