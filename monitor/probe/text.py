"""Text bodies at an image URL: an SVG image, or a document (HTML, XML, JSON, text) — a soft 404.

The ``Text`` parser re-reads its buffer from the start, but only after it grew by half, so
the work stays linear in the bytes fed.
"""

from __future__ import annotations

import re

from monitor.probe.parser import Parser, bad, not_image
from monitor.probe.svg import svg_size
from monitor.types import ImageFacts

__all__ = ["Text", "looks_text"]

_TEXT_WINDOW = 512  # bytes of a non-markup body inspected before calling it text
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 11, 12, 13, 27} | {127}
_HTML_TAGS = frozenset(
    {"html", "head", "body", "meta", "title", "link", "script", "style", "div", "span", "p", "a", "table"}
    | {"form", "iframe", "noscript", "base", "center", "pre", "h1", "h2", "h3", "br", "img", "ul", "ol"}
    | {"li", "header", "main", "nav", "section", "article"}
)

_DOCTYPE_HTML = re.compile(rb"<!doctype[ \t\r\n]+html\b", re.IGNORECASE)
# A declaration (DOCTYPE with optional internal subset); quoted strings may contain '>'.
_DECL = re.compile(rb"<!(?:[^>\[\"']|\"[^\"]*\"|'[^']*'|\[(?:[^\]\"']|\"[^\"]*\"|'[^']*')*\])*>")
_NAME = re.compile(rb"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)")


class Text(Parser):
    """Markup or plain text: an SVG image, or a document where an image should be.

    Re-parsed from the start each time, but only after the buffer grew by half, so the total
    work stays linear in the bytes fed. Its ``need`` is a pacing hint, not a requirement.
    """

    __slots__ = ("content_type", "utf16")
    elastic = True

    def __init__(self, content_type: str | None, utf16: bool) -> None:
        super().__init__(None, "text")
        self.content_type = content_type
        self.utf16 = utf16

    def advance(self, buf: bytearray) -> ImageFacts | None:
        facts = self._classify(buf, None)
        if facts is None:
            self.need = len(buf) + max(64, len(buf) // 2)
        return facts

    def conclude(self, buf: bytearray, capped: bool, cap: int) -> ImageFacts:
        ending = f"within the first {cap} bytes" if capped else f"before the stream ended ({len(buf)} bytes)"
        return self._classify(buf, ending) or bad(None, f"no recognisable text structure {ending}")

    def _classify(self, buf: bytearray, ending: str | None) -> ImageFacts | None:
        """Facts, or None while undecided; ``ending`` says how the stream stopped (None: it goes on)."""
        data: bytes | bytearray = buf
        if self.utf16:
            if len(buf) < 2 * _TEXT_WINDOW and ending is None:
                return None
            data = bytes(buf).decode("utf-16", "replace").encode("utf-8")
        pos = _skip_ws(data, 3 if data[:3] == b"\xef\xbb\xbf" else 0)
        if pos >= len(data):
            return None if ending is None else not_image("blank body", self.content_type)
        if data[pos] == 0x3C:  # '<'
            facts = self._markup(data, pos, ending)
            if facts is not _NOT_MARKUP:
                return facts
        if len(data) < _TEXT_WINDOW and ending is None:
            return None
        if not looks_text(data[:_TEXT_WINDOW]):
            return bad(None, "unknown binary data (not an image format this probe knows)")
        if data[pos] in b"{[":
            return not_image("JSON", self.content_type)
        return not_image("text", self.content_type)

    def _markup(self, data: bytes | bytearray, pos: int, ending: str | None) -> ImageFacts | None:
        """Skip the prolog (XML declaration, comments, DOCTYPE) and judge the root element."""
        n = len(data)
        truncated = None if ending is None else bad(None, f"markup without a root element {ending}")
        while True:
            pos = _skip_ws(data, pos)
            if pos >= n:
                return truncated
            if data[pos] != 0x3C:
                return _NOT_MARKUP
            if pos + 1 >= n:
                return truncated
            if data.startswith(b"<?", pos) or data.startswith(b"<!--", pos):
                opener, closer = (b"<?", b"?>") if data[pos + 1] == 0x3F else (b"<!--", b"-->")
                end = data.find(closer, pos + len(opener))
                if end < 0:
                    return truncated
                pos = end + len(closer)
            elif data.startswith(b"<!", pos):
                if _DOCTYPE_HTML.match(data, pos):
                    return not_image("HTML page", self.content_type)
                decl = _DECL.match(data, pos)
                if decl is None:
                    return truncated
                pos = decl.end()
            else:
                name = _NAME.match(data, pos)
                if name is None:
                    return _NOT_MARKUP
                if name.end() >= n:
                    return truncated  # the element name may go on
                local = name.group(1).decode("ascii").rsplit(":", 1)[-1].lower()
                if local == "svg":
                    return svg_size(data, name.end(), ending)
                if local in _HTML_TAGS or self.content_type == "text/html":
                    return not_image("HTML page", self.content_type)
                return not_image(f"XML document <{local[:40]}>", self.content_type)


_NOT_MARKUP = ImageFacts(None, None, "unreadable", "not markup")  # sentinel: fall back to the text rules


def _skip_ws(data: bytes | bytearray, pos: int) -> int:
    while pos < len(data) and data[pos] in b" \t\r\n\f":
        pos += 1
    return pos


def looks_text(sample: bytes | bytearray) -> bool:
    """No NUL and almost no control bytes: text in any ASCII-compatible encoding, not binary."""
    if 0 in sample:
        return False
    controls = sum(1 for byte in sample if byte in _TEXT_CONTROLS)
    return controls <= len(sample) // 100
