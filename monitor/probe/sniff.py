"""The probe's entry: ``ImageProbe`` takes bytes as they arrive and ``sniff`` picks the format parser.

The checker streams an image URL and stops reading as soon as ``ImageProbe.feed`` returns an
answer, so a 20 MB photo costs only its header. Each binary parser keeps its position between
calls, and the text parser re-runs only after the buffer grew geometrically, so feeding byte by
byte stays linear. Nothing is kept beyond ``cap`` bytes and nothing raises on hostile input:
problems come back as ``ImageFacts`` with ``error="unreadable"`` (bytes that start like an image,
or unknown binary) or ``error="not_image"`` (HTML, text, JSON, an empty body: a soft 404).

Pure Python (``re``, ``zlib``, ``math``) so no imaging library is needed at run time; SVG is read
from the text of its opening tag (``svg``), never with an XML parser that could expand entities.
"""

from __future__ import annotations

from monitor.probe.fixed import sniff_more
from monitor.probe.isobmff import Bmff
from monitor.probe.jpeg import Jpeg
from monitor.probe.parser import Parser, bad, not_image, uint
from monitor.probe.raster import BMP_DIB_SIZES, ICO_SIGS, PNG_SIG, Bmp, Gif, Ico, Png
from monitor.probe.text import Text, looks_text
from monitor.probe.tiff import TIFF_SIGS, Tiff
from monitor.probe.webp import WebP
from monitor.types import ImageFacts

__all__ = ["DEFAULT_CAP", "ImageProbe", "probe_bytes"]

DEFAULT_CAP = 512 * 1024
_SNIFF = 32  # bytes needed to tell the formats apart (BMP needs its DIB header size at 14..18)


def _clean_content_type(content_type: object) -> str | None:
    """The media type only, printable ASCII, short: it ends up in reports."""
    if not isinstance(content_type, str):
        return None
    media = content_type.split(";", 1)[0].strip().lower()[:60]
    media = "".join(ch for ch in media if " " < ch < "\x7f")
    return media or None


def _sniff(buf: bytearray, final: bool, content_type: str | None) -> Parser | ImageFacts | None:
    """Pick a parser from the first bytes; None while too few bytes arrived to tell."""
    n = len(buf)
    if n == 0:
        return not_image("empty body", content_type) if final else None
    if n < _SNIFF and not final:
        return None
    head = bytes(buf[:_SNIFF])
    if head.startswith(b"\xff\xd8\xff"):
        return Jpeg()
    if head.startswith(PNG_SIG):
        return Png()
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Gif()
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WebP()
    if head[4:8] == b"ftyp":
        return Bmff()
    if head[:4] in TIFF_SIGS:
        return Tiff(big=head[:2] == b"MM")
    if head[:2] == b"BM" and n >= 18 and uint(head, 14, 4, False) in BMP_DIB_SIZES:
        return Bmp()
    if head[:4] in ICO_SIGS and n >= 6 and uint(head, 4, 2, False) > 0:
        return Ico()
    more = sniff_more(head)
    if more is not None:
        return more
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return Text(content_type, utf16=True)
    truncated = _truncated_signature(head)
    if truncated is not None:
        return bad(truncated, f"truncated {truncated.upper()} header: only {n} bytes")
    if head.startswith(b"%PDF-"):
        return not_image("PDF document", content_type)
    if head.startswith(b"\x1f\x8b"):
        return bad(None, "gzip-compressed body (Content-Encoding not undone?)")
    if head[1:4] == b"PNG" and head[4:8] == PNG_SIG[4:]:
        return bad(None, "corrupted PNG signature")
    if looks_text(head):
        return Text(content_type, utf16=False)
    return bad(None, f"unknown binary format (starts with {head[:8].hex(' ')})")


def _truncated_signature(head: bytes) -> str | None:
    """The format whose signature this whole (short) buffer is a prefix of."""
    n = len(head)
    candidates = [(b"\xff\xd8\xff", "jpeg", 3), (PNG_SIG, "png", 8), (b"GIF87a", "gif", 6)]
    candidates += [(b"GIF89a", "gif", 6)] + [(sig, "tiff", 4) for sig in TIFF_SIGS]
    candidates += [(sig, "ico", 6) for sig in ICO_SIGS]  # ICO needs its entry count too
    for signature, fmt, needed in candidates:
        if n < needed and signature.startswith(head[: len(signature)]):
            return fmt
    if n < 12 and head[:4] == b"RIFF"[:n] and (n <= 8 or b"WEBP".startswith(head[8:])):
        return "webp"
    if n < 18 and head[:2] == b"BM"[:n]:
        return "bmp"
    return None


class ImageProbe:
    """Feed bytes as they arrive; learn the size as early as possible.

    ``feed`` returns None while more bytes are needed and the final ``ImageFacts`` as soon as they
    are known (stop reading then). ``finish`` gives the answer at the end of the stream. At most
    ``cap`` bytes are kept; reaching the cap ends the probe.
    """

    __slots__ = ("_buf", "_cap", "_content_type", "_need", "_parser", "_result")

    def __init__(self, cap: int = DEFAULT_CAP, content_type: str | None = None) -> None:
        self._cap = max(1, cap) if isinstance(cap, int) and not isinstance(cap, bool) else DEFAULT_CAP
        self._content_type = _clean_content_type(content_type)
        self._buf = bytearray()
        self._need = min(_SNIFF, self._cap)  # always <= cap, so reaching the cap triggers a step
        self._parser: Parser | None = None
        self._result: ImageFacts | None = None

    @property
    def bytes_seen(self) -> int:
        """Bytes taken in so far (never more than the cap; nothing after the answer)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> ImageFacts | None:
        """Take the next chunk; None means "send more", facts mean "stop reading, this is final"."""
        if self._result is not None:
            return self._result
        buf = self._buf
        try:
            if len(chunk) > self._cap - len(buf):
                chunk = chunk[: self._cap - len(buf)]
            buf += chunk
        except TypeError:  # not bytes-like: nothing arrived
            return None
        if len(buf) > self._cap:  # a memoryview of wider items counts items, not bytes
            del buf[self._cap :]
        if len(buf) >= self._need:
            self._result = self._step(final=len(buf) >= self._cap)
        return self._result

    def finish(self) -> ImageFacts:
        """The stream ended: the answer from what arrived (a truncated header is unreadable)."""
        if self._result is None:
            self._result = self._step(final=True) or bad(None, "no answer at the end of the stream")
        return self._result

    def _step(self, final: bool) -> ImageFacts | None:
        try:
            return self._attempt(final)
        except Exception as exc:  # last line of defence: hostile bytes must never crash the checker
            fmt = self._parser.fmt if self._parser is not None else None
            return bad(fmt, f"parser error on corrupt header ({type(exc).__name__})")

    def _attempt(self, final: bool) -> ImageFacts | None:
        buf = self._buf
        capped = len(buf) >= self._cap
        final = final or capped
        if self._parser is None:
            found = _sniff(buf, final, self._content_type)
            if found is None or isinstance(found, ImageFacts):
                return found
            self._parser = found
        parser = self._parser
        facts = parser.advance(buf)
        if facts is not None:
            return facts
        if final:
            return parser.conclude(buf, capped, self._cap)
        if parser.need > self._cap and not parser.elastic:  # the answer cannot arrive within the cap
            return parser.conclude(buf, True, self._cap)
        self._need = max(min(parser.need, self._cap), len(buf) + 1)
        return None


def probe_bytes(data: bytes, cap: int = DEFAULT_CAP, content_type: str | None = None) -> ImageFacts:
    """Probe a complete (or already truncated) body in one call."""
    probe = ImageProbe(cap, content_type)
    return probe.feed(data) or probe.finish()
