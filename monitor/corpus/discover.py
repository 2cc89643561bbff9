"""Finding article files: walk the roots in sorted order, filter by include/exclude globs.

Streaming and loop-safe, so a huge or cyclic tree costs one open listing per directory
level; a root or directory that cannot be read becomes a ``CorpusError``, never an exception.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from monitor.types import CorpusError, CorpusErrorKind

__all__ = ["CorpusFile", "RootUnavailable", "check_roots", "discover"]


@dataclass(frozen=True, slots=True)
class CorpusFile:
    """A candidate article file: ``path`` is the display path (root joined with the relative path)."""

    path: str
    abs_path: Path
    size: int
    mtime_ns: int


def _segment_regex(segment: str) -> str:
    """One path segment of a glob as a regex: ``*`` and ``?`` never cross a '/'."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            cls, end = _char_class(segment, i)
            if cls is None:
                out.append(re.escape(char))
            else:
                out.append(cls)
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _char_class(segment: str, start: int) -> tuple[str | None, int]:
    """``[...]`` at ``start`` as a regex class (``!`` negates, a leading ``]`` is literal) and
    its end index; (None, start) when unterminated or invalid, so the '[' is literal."""
    j = start + 1
    if segment[j : j + 1] == "!":
        j += 1
    if segment[j : j + 1] == "]":
        j += 1
    end = segment.find("]", j)
    if end < 0:
        return None, start
    body = segment[start + 1 : end]
    negate = body.startswith("!")
    chars = "".join(ch if ch == "-" else re.escape(ch) for ch in (body[1:] if negate else body))
    cls = f"[^/{chars}]" if negate else f"[{chars}]"
    try:
        re.compile(cls)
    except re.error:  # e.g. a reversed range "[z-a]"
        return None, start
    return cls, end


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` matches zero or more whole segments, so ``**/*.md`` matches ``a.md`` too."""
    segments = pattern.strip("/").split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:.*/)?")
        else:
            parts.append(_segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(parts))


@dataclass(frozen=True, slots=True)
class _Globs:
    """Glob patterns: one without '/' matches the file name at any depth (like .gitignore),
    one with '/' matches the whole path relative to the root."""

    by_name: tuple[re.Pattern[str], ...]
    by_path: tuple[re.Pattern[str], ...]
    dir_prefixes: tuple[re.Pattern[str], ...]  # "x/**" patterns: prune directory x outright

    @classmethod
    def of(cls, patterns: Sequence[str]) -> _Globs:
        named = tuple(_glob_regex(p) for p in patterns if "/" not in p.strip("/"))
        pathed = tuple(_glob_regex(p) for p in patterns if "/" in p.strip("/"))
        prefixes = tuple(_glob_regex(p.rstrip("/")[:-3]) for p in patterns if p.rstrip("/").endswith("/**"))
        return cls(named, pathed, prefixes)

    def match(self, rel: str, name: str) -> bool:
        return any(p.fullmatch(name) for p in self.by_name) or any(p.fullmatch(rel) for p in self.by_path)

    def prunes(self, rel_dir: str, name: str) -> bool:
        return self.match(rel_dir, name) or any(p.fullmatch(rel_dir) for p in self.dir_prefixes)


def _display(root: str, rel: str) -> str:
    return PurePosixPath(root, rel).as_posix() if rel else root


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return sorted(entries, key=lambda entry: entry.name)


class RootUnavailable(Exception):
    """A corpus root that does not exist or cannot be read: the run must not start.

    Unlike a bad file, a missing root would make every URL under it look gone (and a cron
    job report a healthy night), so it is an error before anything is read or deleted.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corpus root {path!r}: {reason}")
        self.path = path
        self.reason = reason


def check_roots(roots: Sequence[str | Path]) -> None:
    """Raise ``RootUnavailable`` for the first root that is missing or unreadable."""
    for root in roots:
        shown = Path(root).as_posix()
        try:
            info = os.stat(root)
            if stat.S_ISDIR(info.st_mode):
                with os.scandir(root):
                    pass
            elif stat.S_ISREG(info.st_mode):
                os.close(os.open(root, os.O_RDONLY))
            else:
                raise RootUnavailable(shown, "not a regular file or directory")
        except FileNotFoundError:
            raise RootUnavailable(shown, "no such file or directory") from None
        except OSError as exc:
            raise RootUnavailable(shown, exc.strerror or str(exc)) from None


def discover(
    roots: Sequence[str | Path], include: Sequence[str], exclude: Sequence[str]
) -> Iterator[CorpusFile | CorpusError]:
    """Yield the article files under ``roots`` in sorted order, streaming directory by directory.

    A root may be a file: it is yielded whatever the patterns say (naming it is explicit).
    Hidden entries (".git", editor lock files) are skipped, directories are visited once
    (symlink loops end there) and a file reachable from two roots is yielded once. A root
    or directory that cannot be read becomes a ``CorpusError`` for that path.
    """
    includes, excludes = _Globs.of(include), _Globs.of(exclude)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        display_root = Path(root).as_posix()
        try:
            info = os.stat(root)
        except FileNotFoundError:
            yield CorpusError(display_root, CorpusErrorKind.NOT_FOUND, "no such file or directory")
            continue
        except OSError as exc:
            yield CorpusError(display_root, CorpusErrorKind.UNREADABLE, exc.strerror or str(exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            seen_dirs.add((info.st_dev, info.st_ino))
            yield from _walk(str(root), display_root, includes, excludes, seen_dirs, seen_files)
        elif stat.S_ISREG(info.st_mode):
            if (info.st_dev, info.st_ino) not in seen_files:
                seen_files.add((info.st_dev, info.st_ino))
                yield CorpusFile(display_root, Path(root).absolute(), info.st_size, info.st_mtime_ns)
        else:
            yield CorpusError(display_root, CorpusErrorKind.UNREADABLE, "not a regular file or directory")


def _walk(
    root: str,
    display_root: str,
    includes: _Globs,
    excludes: _Globs,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[tuple[int, int]],
) -> Iterator[CorpusFile | CorpusError]:
    """Depth-first over sorted entries; the stack holds one sorted listing per open directory."""
    try:
        stack = [(iter(_sorted_entries(root)), "")]
    except OSError as exc:
        yield CorpusError(display_root, CorpusErrorKind.UNREADABLE, exc.strerror or str(exc))
        return
    while stack:
        entries, rel_dir = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        try:
            is_dir = entry.is_dir()
            info = entry.stat() if is_dir or entry.is_symlink() or entry.is_file() else None
        except OSError as exc:  # vanished, or a broken symlink
            if includes.match(rel, entry.name) and not excludes.match(rel, entry.name):
                yield CorpusError(
                    _display(display_root, rel), CorpusErrorKind.UNREADABLE, exc.strerror or str(exc)
                )
            continue
        if is_dir:
            if info is None or excludes.prunes(rel, entry.name):
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:
                continue  # symlink loop, or a directory already walked via another path
            seen_dirs.add(key)
            try:
                stack.append((iter(_sorted_entries(entry.path)), rel))
            except OSError as exc:
                yield CorpusError(
                    _display(display_root, rel), CorpusErrorKind.UNREADABLE, exc.strerror or str(exc)
                )
            continue
        if not includes.match(rel, entry.name) or excludes.match(rel, entry.name):
            continue
        if info is None or not stat.S_ISREG(info.st_mode):
            yield CorpusError(_display(display_root, rel), CorpusErrorKind.UNREADABLE, "not a regular file")
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_files:
            continue
        seen_files.add(key)
        yield CorpusFile(
            _display(display_root, rel), Path(entry.path).absolute(), info.st_size, info.st_mtime_ns
        )
