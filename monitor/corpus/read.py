"""Corpus stage: find article files and turn their bytes into ``Article`` values.

Nothing here raises on bad input: a file that cannot be read as an article becomes a
``CorpusError`` naming the path, a kind, a human message and (when known) the 1-based
line and column in the file. Error kinds:

``not_found`` (root missing), ``unreadable`` (OS error, not a regular file),
``empty``, ``too_large``, ``binary``, ``not_utf8``, ``no_frontmatter``,
``yaml_syntax``, ``yaml_unsafe_tag`` (a tag SafeLoader cannot build, e.g.
``!!python/object``), ``yaml_alias_bomb`` (aliases expand past a limit, or refer to
themselves) and ``not_mapping``.

YAML is parsed by libyaml (``CSafeLoader``) into a node graph, checked for alias
expansion, then built into Python values by a small builder that handles the plain
types itself and delegates every other tag to PyYAML's ``SafeConstructor``.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.types import Article, CorpusError

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_YAML_DEPTH", "CorpusFile", "discover", "read_article"]

MAX_ALIAS_EXPANSION = 100_000  # nodes after expanding aliases; real frontmatter has a few hundred
MAX_YAML_DEPTH = 100  # nesting levels; real frontmatter has at most 5
_BINARY_SAMPLE = 8192
_BINARY_CONTROL_RATIO = 0.1
# C0 controls other than tab, LF, FF, CR, plus DEL: text files (almost) never hold these.
_CONTROL_BYTES = bytes([*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class CorpusFile:
    """A candidate article file: ``path`` is the display path (root joined with the relative path)."""

    path: str
    abs_path: Path
    size: int
    mtime_ns: int


# --- discovery ---------------------------------------------------------------------------


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
            yield CorpusError(display_root, "not_found", "no such file or directory")
            continue
        except OSError as exc:
            yield CorpusError(display_root, "unreadable", exc.strerror or str(exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            seen_dirs.add((info.st_dev, info.st_ino))
            yield from _walk(str(root), display_root, includes, excludes, seen_dirs, seen_files)
        elif stat.S_ISREG(info.st_mode):
            if (info.st_dev, info.st_ino) not in seen_files:
                seen_files.add((info.st_dev, info.st_ino))
                yield CorpusFile(display_root, Path(root).absolute(), info.st_size, info.st_mtime_ns)
        else:
            yield CorpusError(display_root, "unreadable", "not a regular file or directory")


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
        yield CorpusError(display_root, "unreadable", exc.strerror or str(exc))
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
                yield CorpusError(_display(display_root, rel), "unreadable", exc.strerror or str(exc))
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
                yield CorpusError(_display(display_root, rel), "unreadable", exc.strerror or str(exc))
            continue
        if not includes.match(rel, entry.name) or excludes.match(rel, entry.name):
            continue
        if info is None or not stat.S_ISREG(info.st_mode):
            yield CorpusError(_display(display_root, rel), "unreadable", "not a regular file")
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_files:
            continue
        seen_files.add(key)
        yield CorpusFile(
            _display(display_root, rel), Path(entry.path).absolute(), info.st_size, info.st_mtime_ns
        )


# --- YAML --------------------------------------------------------------------------------


def _implicit_resolvers() -> dict[str, tuple[tuple[str, re.Pattern[str]], ...]]:
    table = yaml.resolver.Resolver.yaml_implicit_resolvers
    wildcard = tuple(table.get(None, ()))  # type: ignore[call-overload]
    # "=" (value) and "!", "&", "*" (yaml) resolve to tags nothing can construct: keep them as text.
    unusable = {"tag:yaml.org,2002:value", "tag:yaml.org,2002:yaml"}
    return {
        first: tuple(pair for pair in (*resolvers, *wildcard) if pair[0] not in unusable)
        for first, resolvers in table.items()
        if first is not None
    }


_IMPLICIT = _implicit_resolvers()


class _Loader(yaml.CSafeLoader):
    """CSafeLoader with PyYAML's resolution rules minus the per-node overhead.

    The C composer calls these Python hooks for every node; path resolvers are never used,
    so the path hooks do nothing and implicit resolution reads a precomputed table
    (measured: composing the real articles takes about a fifth less time).
    """

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in _IMPLICIT.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is SequenceNode else _MAP

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


# Scalar constructors that are plain functions (no generator, no memo needed): called directly.
_PLAIN_SCALARS = {
    f"tag:yaml.org,2002:{name}": yaml.constructor.SafeConstructor.yaml_constructors[
        f"tag:yaml.org,2002:{name}"
    ]
    for name in ("null", "bool", "int", "float", "timestamp")
}


class _YamlProblem(Exception):
    """Raised inside the YAML handler; ``line``/``column`` are 1-based within the frontmatter,
    counted as YAML counts them (``yaml_lines``) or as an editor does (newlines only)."""

    def __init__(
        self,
        kind: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        *,
        yaml_lines: bool = True,
    ):
        super().__init__(message)
        self.kind, self.message, self.line, self.column = kind, message, line, column
        self.yaml_lines = yaml_lines


_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _editor_position(text: str, line: int, column: int) -> tuple[int, int]:
    """YAML's 1-based (line, column) in ``text`` as an editor shows it: YAML also breaks lines at
    NEL, U+2028 and U+2029, which editors and ``grep -n`` do not."""
    start = 0
    for _ in range(line - 1):
        found = _YAML_BREAK.search(text, start)
        if found is None:
            break
        start = found.end()
    offset = min(len(text), start + column - 1)
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_aliases(root: Node) -> None:
    """Refuse node graphs whose alias expansion is huge (billion laughs) or cyclic.

    Aliases are shared node objects, so sizes are memoised by identity: the walk costs
    the number of distinct nodes, however large the expansion would be.
    """
    sizes: dict[int, int] = {}
    active = {id(root)}
    stack: list[list[Any]] = [[root, _children(root), 0, 1]]  # node, children, next child, size
    while stack:
        frame = stack[-1]
        node, kids, index, total = frame
        if index < len(kids):
            frame[2] = index + 1
            kid = kids[index]
            known = sizes.get(id(kid))
            if known is not None:
                frame[3] = total + known
                if frame[3] > MAX_ALIAS_EXPANSION:
                    raise _alias_bomb(kid)
            elif id(kid) in active:
                mark = kid.start_mark
                raise _YamlProblem(
                    "yaml_alias_bomb",
                    "an alias refers to a node that contains it",
                    mark.line + 1,
                    mark.column + 1,
                )
            else:
                active.add(id(kid))
                stack.append([kid, _children(kid), 0, 1])
            continue
        stack.pop()
        active.discard(id(node))
        sizes[id(node)] = total
        if total > MAX_ALIAS_EXPANSION:
            raise _alias_bomb(node)
        if stack:
            stack[-1][3] += total


def _alias_bomb(node: Node) -> _YamlProblem:
    mark = node.start_mark
    return _YamlProblem(
        "yaml_alias_bomb",
        f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} nodes (billion laughs?)",
        mark.line + 1,
        mark.column + 1,
    )


def _build(loader: _Loader, node: Node, depth: int) -> Any:
    """Plain strings, lists and dicts directly (the hot path); other tags via SafeConstructor,
    whose undefined-tag constructor refuses anything unsafe."""
    kind = type(node)
    if kind is ScalarNode:
        tag = node.tag
        if tag in (_STR, _MERGE):  # "<<" merges only as a key (handled below); elsewhere it is text
            return node.value
        plain = _PLAIN_SCALARS.get(tag)
        try:
            return plain(loader, node) if plain is not None else loader.construct_object(node)
        except (ValueError, OverflowError) as exc:  # e.g. a timestamp with month 13
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid {_short_tag(tag)} {node.value!r}: {exc}", node.start_mark
            ) from None
    if depth > MAX_YAML_DEPTH:
        raise yaml.constructor.ConstructorError(
            None, None, f"exceeded maximum nesting depth ({MAX_YAML_DEPTH})", node.start_mark
        )
    if kind is SequenceNode and node.tag == _SEQ:
        return [_build(loader, child, depth + 1) for child in node.value]
    if kind is MappingNode and node.tag == _MAP:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                return loader.construct_object(node, deep=True)
            key = _build(loader, key_node, depth + 1)
            value = _build(loader, value_node, depth + 1)
            try:
                result[key] = value
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found unhashable key",
                    key_node.start_mark,
                ) from None
        return result
    return loader.construct_object(node, deep=True)


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _yaml_problem(exc: Exception, text: str) -> _YamlProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        kind = "yaml_syntax"
        if (
            isinstance(exc, yaml.constructor.ConstructorError)
            and "could not determine a constructor" in problem
        ):
            kind = "yaml_unsafe_tag"
            tag = problem.split("tag ", 1)[-1].strip("'")
            problem = f"tag {_short_tag(tag)} is not allowed (only plain YAML types are)"
        message = f"{exc.context}: {problem}" if exc.context else problem
        if mark is None:
            return _YamlProblem(kind, message)
        return _YamlProblem(kind, message, mark.line + 1, mark.column + 1)
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml reports a byte offset into the UTF-8 encoding of the text.
        before = text.encode("utf-8", "surrogatepass")[: exc.position].decode("utf-8", "ignore")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return _YamlProblem(
            "yaml_syntax", f"character U+{char:04X}: {exc.reason}", line, column, yaml_lines=False
        )
    return _YamlProblem("yaml_syntax", str(exc) or type(exc).__name__)


class _SafeFastYAMLHandler(YAMLHandler):
    """python-frontmatter's YAML handler with a libyaml-backed, alias-checked safe load and a
    split that keeps line positions (the stock one strips the text)."""

    FM_BOUNDARY = re.compile(r"^-{3,}[ \t]*$", re.MULTILINE)
    # The closing line, found from the newline before it: a literal "\n-" prefix lets the
    # regex engine skip ahead, which is 8x faster than a MULTILINE "^" search.
    CLOSING = re.compile(r"\n-{3,}[ \t]*(?=\n|\Z)")

    def split(self, text: str) -> tuple[str, str]:
        """(frontmatter, body): the lines between the opening and closing ``---`` lines.

        The frontmatter starts on file line 2; the body starts on the line after the
        closing delimiter. Raises ValueError when the block is never closed.
        """
        start = text.find("\n") + 1
        if start == 0:
            raise ValueError("frontmatter is never closed")
        closing = self.CLOSING.search(text, start - 1)
        if closing is None:
            raise ValueError("frontmatter is never closed")
        body_start = text.find("\n", closing.end())
        return text[start : closing.start() + 1], text[body_start + 1 :] if body_start >= 0 else ""

    def load(self, fm: str, **kwargs: object) -> Any:
        loader = _Loader(fm)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            if "*" in fm:  # an alias is always spelled "*name"; without one the graph is a tree
                _check_aliases(node)
            return _build(loader, node, 0)
        except _YamlProblem:
            raise
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise _yaml_problem(exc, fm) from None
        finally:
            loader.dispose()


_HANDLER = _SafeFastYAMLHandler()
_FRONTMATTER_LINE_OFFSET = 1  # the opening '---' line


# --- reading -----------------------------------------------------------------------------


def _read_bytes(file: CorpusFile, max_bytes: int) -> tuple[bytes, int] | CorpusError:
    """The file's bytes and mtime, refusing oversized files before reading them."""
    try:
        # O_NONBLOCK: a FIFO swapped in after discovery must not hang the run.
        fd = os.open(file.abs_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return CorpusError(file.path, "unreadable", exc.strerror or str(exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return CorpusError(file.path, "unreadable", "not a regular file")
        if info.st_size > max_bytes:
            return _too_large(file, info.st_size, max_bytes)
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return CorpusError(file.path, "unreadable", exc.strerror or str(exc))
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return _too_large(file, None, max_bytes)
    return data, info.st_mtime_ns


def _too_large(file: CorpusFile, size: int | None, max_bytes: int) -> CorpusError:
    what = f"{size:,} bytes" if size is not None else "grew while being read"
    return CorpusError(file.path, "too_large", f"{what}; the limit is {max_bytes:,} bytes")


def _looks_binary(data: bytes) -> str | None:
    nul = data.find(b"\x00")
    if nul >= 0:
        return f"NUL byte at offset {nul}"
    sample = data[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if controls > _BINARY_CONTROL_RATIO * len(sample):
        return f"{controls} control bytes in the first {len(sample)}"
    return None


def _not_utf8(file: CorpusFile, data: bytes, exc: UnicodeDecodeError) -> CorpusError:
    offset = exc.start
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    message = f"invalid UTF-8 byte 0x{data[offset]:02x} at byte offset {offset} ({exc.reason})"
    return CorpusError(file.path, "not_utf8", message, line, column)


def read_article(file: CorpusFile, *, max_bytes: int) -> Article | CorpusError:
    """Read one file into an ``Article`` (``path`` is the file's display path), or say why not.

    A UTF-8 BOM and CRLF line endings are accepted. Line and column of YAML problems are
    1-based and count from the top of the file.
    """
    read = _read_bytes(file, max_bytes)
    if isinstance(read, CorpusError):
        return read
    data, mtime_ns = read
    if not data.strip():
        return CorpusError(
            file.path, "empty", "the file is empty" if not data else "the file is only whitespace"
        )
    binary = _looks_binary(data)
    if binary is not None:
        return CorpusError(file.path, "binary", f"not a text file: {binary}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_utf8(file, data, exc)
    if text.startswith(codecs.BOM_UTF8.decode("utf-8")):
        text = text[1:]
        if not text.strip():
            return CorpusError(file.path, "empty", "the file is only a byte order mark and whitespace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not _HANDLER.detect(text):
        return CorpusError(file.path, "no_frontmatter", "the file does not start with a '---' line", 1, 1)
    try:
        fm, body = _HANDLER.split(text)
    except ValueError:
        return CorpusError(file.path, "no_frontmatter", "the '---' block on line 1 is never closed", 1, 1)
    try:
        meta = _HANDLER.load(fm)
    except _YamlProblem as problem:
        line, column = problem.line, problem.column
        if line is not None and problem.yaml_lines:
            line, column = _editor_position(fm, line, column or 1)
        if line is not None:
            line += _FRONTMATTER_LINE_OFFSET
        return CorpusError(file.path, problem.kind, problem.message, line, column)
    if not isinstance(meta, dict):
        names: dict[type, str] = {list: "list", str: "plain string"}
        kind = names.get(type(meta), type(meta).__name__)
        return CorpusError(
            file.path, "not_mapping", f"the frontmatter is a {kind}, not a mapping of fields", 2, 1
        )
    if not all(type(key) is str for key in meta):
        meta = {str(key): value for key, value in meta.items()}
    title = meta.get("title")
    return Article(
        path=file.path,
        title=title if isinstance(title, str) else None,
        meta=meta,
        body=body,
        size=len(data),
        mtime_ns=mtime_ns,
        sha256=sha256(data).hexdigest(),
    )
