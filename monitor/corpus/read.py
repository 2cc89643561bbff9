"""Reading one article file: bytes to an ``Article``, or a ``CorpusError`` saying why not.

Nothing here raises on bad input: a file that cannot be read as an article becomes a
``CorpusError`` naming the path, a kind, a human message and (when known) the 1-based
line and column in the file. Error kinds:

``not_found`` (root missing), ``unreadable`` (OS error, not a regular file),
``empty``, ``too_large``, ``binary``, ``not_utf8``, ``no_frontmatter``,
``yaml_syntax``, ``yaml_unsafe_tag`` (a tag SafeLoader cannot build, e.g.
``!!python/object``), ``yaml_alias_bomb`` (aliases expand past a limit, or refer to
themselves) and ``not_mapping``. Files are found by ``monitor.corpus.discover``; the
frontmatter is parsed by ``monitor.corpus.yaml_safe``.
"""

from __future__ import annotations

import codecs
import os
import stat
from hashlib import sha256

from monitor.corpus.discover import CorpusFile
from monitor.corpus.yaml_safe import SafeYAMLHandler, YamlProblem, editor_position
from monitor.types import Article, CorpusError, CorpusErrorKind

__all__ = ["read_article"]

_BINARY_SAMPLE = 8192
_BINARY_CONTROL_RATIO = 0.1
# C0 controls other than tab, LF, FF, CR, plus DEL: text files (almost) never hold these.
_CONTROL_BYTES = bytes([*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F])

_HANDLER = SafeYAMLHandler()
_FRONTMATTER_LINE_OFFSET = 1  # the opening '---' line


def _read_bytes(file: CorpusFile, max_bytes: int) -> tuple[bytes, int] | CorpusError:
    """The file's bytes and mtime, refusing oversized files before reading them."""
    try:
        # O_NONBLOCK: a FIFO swapped in after discovery must not hang the run.
        fd = os.open(file.abs_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return CorpusError(file.path, CorpusErrorKind.UNREADABLE, exc.strerror or str(exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return CorpusError(file.path, CorpusErrorKind.UNREADABLE, "not a regular file")
        if info.st_size > max_bytes:
            return _too_large(file, info.st_size, max_bytes)
        with open(fd, "rb", closefd=False) as handle:
            # ask for the stat size (+1 to see growth), not the limit: read(limit) allocates the
            # whole limit for every file, which cost a sixth of parsing (profiled)
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # grew since fstat: read on, up to the limit
                data += handle.read(max_bytes + 1 - len(data))
    except OSError as exc:
        return CorpusError(file.path, CorpusErrorKind.UNREADABLE, exc.strerror or str(exc))
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return _too_large(file, None, max_bytes)
    return data, info.st_mtime_ns


def _too_large(file: CorpusFile, size: int | None, max_bytes: int) -> CorpusError:
    what = f"{size:,} bytes" if size is not None else "grew while being read"
    return CorpusError(file.path, CorpusErrorKind.TOO_LARGE, f"{what}; the limit is {max_bytes:,} bytes")


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
    return CorpusError(file.path, CorpusErrorKind.NOT_UTF8, message, line, column)


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
            file.path,
            CorpusErrorKind.EMPTY,
            "the file is empty" if not data else "the file is only whitespace",
        )
    binary = _looks_binary(data)
    if binary is not None:
        return CorpusError(file.path, CorpusErrorKind.BINARY, f"not a text file: {binary}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _not_utf8(file, data, exc)
    if text.startswith(codecs.BOM_UTF8.decode("utf-8")):
        text = text[1:]
        if not text.strip():
            return CorpusError(
                file.path, CorpusErrorKind.EMPTY, "the file is only a byte order mark and whitespace"
            )
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not _HANDLER.detect(text):
        return CorpusError(
            file.path, CorpusErrorKind.NO_FRONTMATTER, "the file does not start with a '---' line", 1, 1
        )
    try:
        fm, body = _HANDLER.split(text)
    except ValueError:
        return CorpusError(
            file.path, CorpusErrorKind.NO_FRONTMATTER, "the '---' block on line 1 is never closed", 1, 1
        )
    try:
        meta = _HANDLER.load(fm)
    except YamlProblem as problem:
        line, column = problem.line, problem.column
        if line is not None and problem.yaml_lines:
            line, column = editor_position(fm, line, column or 1)
        if line is not None:
            line += _FRONTMATTER_LINE_OFFSET
        return CorpusError(file.path, problem.kind, problem.message, line, column)
    if not isinstance(meta, dict):
        names: dict[type, str] = {list: "list", str: "plain string"}
        kind = names.get(type(meta), type(meta).__name__)
        return CorpusError(
            file.path,
            CorpusErrorKind.NOT_MAPPING,
            f"the frontmatter is a {kind}, not a mapping of fields",
            2,
            1,
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
