"""Incremental image-header probe: learn an image's displayed size from as few bytes as possible.

The checker streams an image URL and stops reading as soon as ``ImageProbe.feed`` returns an
answer, so a 20 MB photo costs only its header. Each binary parser keeps its position between
calls, and the text parser re-runs only after the buffer grew geometrically, so feeding byte by
byte stays linear. Nothing is kept beyond ``cap`` bytes and nothing raises on hostile input:
problems come back as ``ImageFacts`` with ``error="unreadable"`` (bytes that start like an image,
or unknown binary) or ``error="not_image"`` (HTML, text, JSON, an empty body: a soft 404).

Pure Python (``re``, ``zlib``, ``math``) so no imaging library is needed at run time; SVG is read
from the text of its opening tag, never with an XML parser that could expand entities.
"""

from __future__ import annotations

import math
import re
import zlib
from abc import ABC, abstractmethod

from monitor.types import ImageFacts, Size

__all__ = ["DEFAULT_CAP", "ImageProbe", "probe_bytes"]

DEFAULT_CAP = 512 * 1024
_SNIFF = 32  # bytes needed to tell the formats apart (BMP needs its DIB header size at 14..18)
_TEXT_WINDOW = 512  # bytes of a non-markup body inspected before calling it text

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ICO_SIGS = (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC are not frames
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS = _HEIC_BRANDS | {b"mif1", b"msf1", b"mif2", b"mif3", b"miaf", b"heif"}
_META_CHILDREN = frozenset({b"hdlr", b"pitm", b"iloc", b"iinf", b"iprp", b"idat", b"iref", b"dinf"})
_TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 11, 12, 13, 27} | {127}
_HTML_TAGS = frozenset(
    {"html", "head", "body", "meta", "title", "link", "script", "style", "div", "span", "p", "a", "table"}
    | {"form", "iframe", "noscript", "base", "center", "pre", "h1", "h2", "h3", "br", "img", "ul", "ol"}
    | {"li", "header", "main", "nav", "section", "article"}
)
_SVG_UNITS = {"": 1.0, "px": 1.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6}
_SVG_UNITS |= {"pt": 4 / 3, "pc": 16.0}
_MAX_DIMENSION = 2**31 - 1

_DOCTYPE_HTML = re.compile(rb"<!doctype[ \t\r\n]+html\b", re.IGNORECASE)
# A declaration (DOCTYPE with optional internal subset); quoted strings may contain '>'.
_DECL = re.compile(rb"<!(?:[^>\[\"']|\"[^\"]*\"|'[^']*'|\[(?:[^\]\"']|\"[^\"]*\"|'[^']*')*\])*>")
_NAME = re.compile(rb"<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)")
_TAG_REST = re.compile(rb"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_ATTR = re.compile(rb"([^\s=/>\"']+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_SVG_LENGTH = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%]*)\s*")
_VIEWBOX_SEP = re.compile(r"[\s,]+")


def _uint(buf: bytes | bytearray, offset: int, length: int, big: bool) -> int:
    """Unsigned integer at ``offset``; callers check that ``length`` bytes are there."""
    return int.from_bytes(buf[offset : offset + length], "big" if big else "little")


def _show(raw: bytes) -> str:
    """Four-character codes from hostile files, printable and escaped."""
    return repr(raw)[2:-1]


def _sized(fmt: str, width: int, height: int, orientation: int = 1, detail: str = "") -> ImageFacts:
    """Success facts, with EXIF orientations 5-8 swapping the axes; an empty size is unreadable."""
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        return _bad(fmt, f"{fmt.upper()} header gives an impossible size {width}x{height}")
    if orientation in (5, 6, 7, 8):
        return ImageFacts(
            fmt, Size(height, width), None, f"stored {width}x{height}, orientation {orientation}"
        )
    return ImageFacts(fmt, Size(width, height), None, detail)


def _bad(fmt: str | None, detail: str) -> ImageFacts:
    return ImageFacts(fmt, None, "unreadable", detail)


def _not_image(what: str, content_type: str | None) -> ImageFacts:
    """A soft 404: the server answered with a document where an image should be."""
    suffix = f" (Content-Type {content_type})" if content_type else ""
    return ImageFacts(None, None, "not_image", f"{what} served at an image URL{suffix}")


def _clean_content_type(content_type: object) -> str | None:
    """The media type only, printable ASCII, short: it ends up in reports."""
    if not isinstance(content_type, str):
        return None
    media = content_type.split(";", 1)[0].strip().lower()[:60]
    media = "".join(ch for ch in media if " " < ch < "\x7f")
    return media or None


def _exif_orientation(tiff: bytes | bytearray) -> int:
    """Orientation (1-8) from an EXIF TIFF block; anything missing or invalid means 1 (as browsers do)."""
    if tiff[:6] == b"Exif\x00\x00":
        tiff = tiff[6:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    big = tiff[:2] == b"MM"
    if _uint(tiff, 2, 2, big) != 42:
        return 1
    value = _ifd_tags(tiff, _uint(tiff, 4, 4, big), big, bigtiff=False).get(0x0112, 1)
    return value if 1 <= value <= 8 else 1


def _ifd_tags(data: bytes | bytearray, ifd: int, big: bool, bigtiff: bool) -> dict[int, int]:
    """Width, length and orientation values of one (possibly partial) IFD; inline values only."""
    count_len, entry_len, count_field = (8, 20, 8) if bigtiff else (2, 12, 4)
    if ifd < 8 or ifd + count_len > len(data):
        return {}
    count = _uint(data, ifd, count_len, big)
    count = min(count, (len(data) - ifd - count_len) // entry_len)
    found: dict[int, int] = {}
    for index in range(count):
        entry = ifd + count_len + index * entry_len
        tag = _uint(data, entry, 2, big)
        if tag not in (0x0100, 0x0101, 0x0112) or tag in found:
            continue
        kind = _uint(data, entry + 2, 2, big)
        if _uint(data, entry + 4, count_field, big) < 1:
            continue
        value_at = entry + 4 + count_field
        width = {1: 1, 3: 2, 4: 4, 16: 8}.get(kind)
        if width is not None and (width <= 4 or bigtiff):
            found[tag] = _uint(data, value_at, width, big)
    return found


class _Parser(ABC):
    """One format's resumable header reader.

    ``advance`` consumes what the buffer holds and returns facts once they are known, otherwise
    sets ``need`` (the buffer length worth trying again at). ``conclude`` gives the final answer
    when no more bytes will come: the provisional size if one is known, else unreadable.
    """

    __slots__ = ("fmt", "label", "need", "provisional", "stage")
    elastic = False  # True: ``need`` only paces re-parsing, so it may exceed the cap

    def __init__(self, fmt: str | None, label: str) -> None:
        self.fmt = fmt
        self.label = label
        self.need = 0
        self.provisional: ImageFacts | None = None
        self.stage = "before the image size"

    @abstractmethod
    def advance(self, buf: bytearray) -> ImageFacts | None:
        """Consume the buffer; facts when known, else None with ``need`` set."""

    def conclude(self, buf: bytearray, capped: bool, cap: int) -> ImageFacts:
        if self.provisional is not None:
            return self.provisional
        if capped:
            return _bad(self.fmt, f"no size within the first {cap} bytes of {self.label} ({self.stage})")
        return _bad(self.fmt, f"truncated {self.label}: stream ended after {len(buf)} bytes, {self.stage}")


class _Jpeg(_Parser):
    """Walks marker segments to the first SOFn, reading EXIF orientation from APP1 on the way."""

    __slots__ = ("exif_seen", "orientation", "pos")

    def __init__(self) -> None:
        super().__init__("jpeg", "JPEG")
        self.pos = 2
        self.orientation = 1
        self.exif_seen = False
        self.stage = "before the SOF marker"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        pos = self.pos
        while True:
            if pos + 2 > n:
                self.need = pos + 2
                break
            if buf[pos] != 0xFF:  # junk between segments: resynchronise on the next 0xFF
                nxt = buf.find(b"\xff", pos)
                pos = n if nxt < 0 else nxt
                continue
            marker = buf[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:  # stuffed byte, TEM, RSTn, SOI
                pos += 2
                continue
            if marker == 0xD9:
                return _bad("jpeg", f"JPEG ends (EOI at byte {pos}) before any SOF marker")
            if marker == 0xDA:
                return _bad("jpeg", f"JPEG scan data (SOS at byte {pos}) starts before any SOF marker")
            if pos + 4 > n:
                self.need = pos + 4
                break
            length = _uint(buf, pos + 2, 2, True)
            if length < 2:
                return _bad("jpeg", f"JPEG segment at byte {pos} has impossible length {length}")
            if marker in _JPEG_SOF:
                if length < 8:
                    return _bad("jpeg", f"JPEG SOF segment at byte {pos} is too short ({length})")
                if pos + 9 > n:
                    self.need = pos + 9
                    break
                height = _uint(buf, pos + 5, 2, True)
                width = _uint(buf, pos + 7, 2, True)
                return _sized("jpeg", width, height, self.orientation)
            end = pos + 2 + length
            if marker == 0xE1 and not self.exif_seen:
                if end > n:
                    self.need = end
                    break
                if buf[pos + 4 : pos + 10] == b"Exif\x00\x00":
                    self.exif_seen = True  # the first EXIF block wins, as in Pillow
                    self.orientation = _exif_orientation(buf[pos + 10 : end])
            pos = end
        self.pos = pos
        return None


class _Png(_Parser):
    """IHDR gives the size; chunks up to the first IDAT may carry an eXIf orientation."""

    __slots__ = ("pos", "size")

    def __init__(self) -> None:
        super().__init__("png", "PNG")
        self.pos = 8
        self.size: tuple[int, int] | None = None
        self.stage = "before the IHDR chunk"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        pos = self.pos
        while True:
            if pos + 8 > n:
                self.need = pos + 8
                break
            length = _uint(buf, pos, 4, True)
            kind = bytes(buf[pos + 4 : pos + 8])
            if self.size is None:
                if kind == b"CgBI" and pos == 8:  # Apple's "fried" PNG puts CgBI before IHDR
                    pos += 12 + length
                    continue
                if kind != b"IHDR" or length != 13:
                    return _bad("png", f"PNG does not start with a valid IHDR chunk (found '{_show(kind)}')")
                if pos + 25 > n:
                    self.need = pos + 25
                    break
                if zlib.crc32(buf[pos + 4 : pos + 21]) != _uint(buf, pos + 21, 4, True):
                    return _bad("png", "PNG IHDR chunk fails its CRC check (corrupt header)")
                self.size = (_uint(buf, pos + 8, 4, True), _uint(buf, pos + 12, 4, True))
                self.provisional = _sized("png", *self.size)
                if self.provisional.error is not None:
                    return self.provisional
                self.stage = "before the first IDAT chunk"
                pos += 25
                continue
            if kind in (b"IDAT", b"IEND") or length > 0x7FFFFFFF:
                return self.provisional
            if kind == b"eXIf":
                if pos + 8 + length > n:
                    self.need = pos + 8 + length
                    break
                return _sized("png", *self.size, _exif_orientation(buf[pos + 8 : pos + 8 + length]))
            pos += 12 + length
        self.pos = pos
        return None


class _Gif(_Parser):
    """The logical screen descriptor is the canvas browsers lay out."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("gif", "GIF")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        if len(buf) < 10:
            self.need = 10
            return None
        return _sized("gif", _uint(buf, 6, 2, False), _uint(buf, 8, 2, False))


class _WebP(_Parser):
    """VP8 / VP8L bitstream header or the VP8X canvas; with VP8X's EXIF flag, looks for orientation."""

    __slots__ = ("canvas", "end", "pos")

    def __init__(self) -> None:
        super().__init__("webp", "WebP")
        self.pos = 12
        self.end = 0
        self.canvas: tuple[int, int] | None = None
        self.stage = "before the first chunk's header"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        if self.canvas is None:
            return self._first_chunk(buf)
        while True:
            pos = self.pos
            if pos >= self.end:
                return self.provisional
            if pos + 8 > n:
                self.need = pos + 8
                return None
            size = _uint(buf, pos + 4, 4, False)
            if buf[pos : pos + 4] == b"EXIF":
                if pos + 8 + size > n:
                    self.need = pos + 8 + size
                    return None
                return _sized("webp", *self.canvas, _exif_orientation(buf[pos + 8 : pos + 8 + size]))
            self.pos = pos + 8 + size + (size & 1)

    def _first_chunk(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        if n < 20:
            self.need = 20
            return None
        kind = bytes(buf[12:16])
        wanted = {b"VP8 ": 30, b"VP8L": 25, b"VP8X": 30}.get(kind)
        if wanted is None:
            return _bad("webp", f"WebP's first chunk is '{_show(kind)}', not VP8/VP8L/VP8X")
        if n < wanted:
            self.need = wanted
            return None
        if kind == b"VP8 ":
            if buf[20] & 1:
                return _bad("webp", "WebP VP8 bitstream does not start with a key frame")
            if buf[23:26] != b"\x9d\x01\x2a":
                return _bad("webp", "WebP VP8 bitstream lacks its start code")
            return _sized("webp", _uint(buf, 26, 2, False) & 0x3FFF, _uint(buf, 28, 2, False) & 0x3FFF)
        if kind == b"VP8L":
            if buf[20] != 0x2F:
                return _bad("webp", "WebP VP8L bitstream lacks its signature byte")
            bits = _uint(buf, 21, 4, False)
            return _sized("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        size = _uint(buf, 16, 4, False)
        canvas = (_uint(buf, 24, 3, False) + 1, _uint(buf, 27, 3, False) + 1)
        self.provisional = _sized("webp", *canvas)
        if size < 10 or not buf[20] & 0x08:  # no EXIF flag: the canvas is the answer
            return self.provisional
        self.canvas = canvas
        self.pos = 20 + size + (size & 1)
        self.end = 8 + _uint(buf, 4, 4, False)
        self.stage = "before the EXIF chunk"
        return self.advance(buf)


class _Bmff(_Parser):
    """AVIF/HEIF: ftyp names the format; the meta box's properties give the primary item's size."""

    __slots__ = ("pos",)

    def __init__(self) -> None:
        super().__init__("heif", "HEIF")
        self.pos = 0
        self.stage = "before the ftyp box"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        while True:
            pos = self.pos
            if pos + 8 > n:
                self.need = pos + 8
                return None
            size = _uint(buf, pos, 4, True)
            kind = bytes(buf[pos + 4 : pos + 8])
            header = 8
            if size == 1:
                if pos + 16 > n:
                    self.need = pos + 16
                    return None
                size, header = _uint(buf, pos + 8, 8, True), 16
            elif size == 0:
                detail = f"{self.label} box '{_show(kind)}' runs to the end of the file, no meta box"
                return _bad(self.fmt, detail)
            if size < header:
                return _bad(self.fmt, f"{self.label} box at byte {pos} has impossible size {size}")
            end = pos + size
            if pos == 0 or kind == b"meta":
                if pos == 0 and size > 4096:
                    return _bad(self.fmt, f"implausible ftyp box of {size} bytes")
                if end > n:
                    self.need = end
                    return None
                if kind == b"meta":
                    return self._meta(bytes(buf[pos + header : end]))
                failure = self._ftyp(bytes(buf[pos + header : end]))
                if failure is not None:
                    return failure
            self.pos = end

    def _ftyp(self, payload: bytes) -> ImageFacts | None:
        major = payload[:4]
        brands = {payload[i : i + 4] for i in range(8, len(payload) - 3, 4)}
        if major in _AVIF_BRANDS:
            self.fmt, self.label = "avif", "AVIF"
        elif major in _HEIC_BRANDS:
            pass
        elif brands & _AVIF_BRANDS:
            self.fmt, self.label = "avif", "AVIF"
        elif major not in _HEIF_BRANDS and not brands & _HEIF_BRANDS:
            return _bad(None, f"ISO media file with brand '{_show(major)}' is not an AVIF/HEIF image")
        self.stage = "before the meta box"
        return None

    def _meta(self, meta: bytes) -> ImageFacts:
        start = 0 if meta[4:8] in _META_CHILDREN else 4  # meta is a FullBox, except in QuickTime files
        primary: int | None = None
        props: list[tuple[bytes, int, int]] = []
        assoc: dict[int, list[int]] = {}
        for kind, begin, end in _boxes(meta, start, len(meta)):
            id_len = 2 if meta[begin : begin + 1] == b"\x00" else 4
            if kind == b"pitm" and end - begin >= 4 + id_len:
                primary = _uint(meta, begin + 4, id_len, True)
            elif kind == b"iprp":
                for child, cbegin, cend in _boxes(meta, begin, end):
                    if child == b"ipco" and not props:
                        props = list(_boxes(meta, cbegin, cend))
                    elif child == b"ipma" and not assoc:
                        assoc = _ipma(meta, cbegin, cend)
        size = _primary_size(meta, props, assoc.get(primary, []) if primary is not None else [])
        if size is None:  # no usable association: the largest declared image is the best guess
            sizes = [_ispe(meta, begin, end) for kind, begin, end in props if kind == b"ispe"]
            known = [s for s in sizes if s is not None]
            if not known:
                return _bad(self.fmt, f"{self.label} meta box has no ispe (image size) property")
            size = max(known, key=lambda s: s[0] * s[1])
        return _sized(self.fmt or "heif", *size)


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """Child boxes (type, payload start, payload end) of a fully buffered ISO BMFF container."""
    found: list[tuple[bytes, int, int]] = []
    pos = start
    end = min(end, len(data))
    while pos + 8 <= end:
        size = _uint(data, pos, 4, True)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size, header = _uint(data, pos + 8, 8, True), 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        found.append((data[pos + 4 : pos + 8], pos + header, pos + size))
        pos += size
    return found


def _ipma(data: bytes, begin: int, end: int) -> dict[int, list[int]]:
    """Item id -> ordered 1-based property indices (ItemPropertyAssociationBox)."""
    if end - begin < 8:
        return {}
    version, wide = data[begin], data[begin + 3] & 1
    id_len = 2 if version < 1 else 4
    pos = begin + 8
    result: dict[int, list[int]] = {}
    for _ in range(_uint(data, begin + 4, 4, True)):
        if pos + id_len + 1 > end:
            break
        item = _uint(data, pos, id_len, True)
        count = data[pos + id_len]
        pos += id_len + 1
        indices: list[int] = []
        for _ in range(count):
            if pos + 1 + wide > end:
                break
            indices.append(_uint(data, pos, 2, True) & 0x7FFF if wide else data[pos] & 0x7F)
            pos += 1 + wide
        result.setdefault(item, indices)
    return result


def _ispe(data: bytes, begin: int, end: int) -> tuple[int, int] | None:
    if end - begin < 12:
        return None
    return _uint(data, begin + 4, 4, True), _uint(data, begin + 8, 4, True)


def _primary_size(
    data: bytes, props: list[tuple[bytes, int, int]], indices: list[int]
) -> tuple[int, int] | None:
    """Apply the primary item's ispe, clap and irot in association order (irot 90/270 swaps)."""
    size: tuple[int, int] | None = None
    for index in indices:
        if not 1 <= index <= len(props):
            continue
        kind, begin, end = props[index - 1]
        if kind == b"ispe":
            size = _ispe(data, begin, end)
        elif size is not None and kind == b"irot" and end > begin and data[begin] & 1:
            size = (size[1], size[0])
        elif size is not None and kind == b"clap" and end - begin >= 16:
            wn, wd, hn, hd = (_uint(data, begin + 4 * i, 4, True) for i in range(4))
            if wd and hd:
                width, height = (2 * wn + wd) // (2 * wd), (2 * hn + hd) // (2 * hd)
                if 0 < width <= size[0] and 0 < height <= size[1]:
                    size = (width, height)
    return size


class _Tiff(_Parser):
    """IFD0 ImageWidth/ImageLength/Orientation, classic TIFF or BigTIFF; the IFD may sit far away."""

    __slots__ = ("big",)

    def __init__(self, big: bool) -> None:
        super().__init__("tiff", "TIFF")
        self.big = big
        self.stage = "before IFD0"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n, big = len(buf), self.big
        bigtiff = _uint(buf, 2, 2, big) == 43
        header = 16 if bigtiff else 8
        if n < header:
            self.need = header
            return None
        if bigtiff and (_uint(buf, 4, 2, big) != 8 or _uint(buf, 6, 2, big) != 0):
            return _bad("tiff", "BigTIFF header has an unsupported offset size")
        ifd = _uint(buf, 8, 8, big) if bigtiff else _uint(buf, 4, 4, big)
        if ifd < header:
            return _bad("tiff", f"TIFF IFD0 offset {ifd} points into the header")
        count_len, entry_len = (8, 20) if bigtiff else (2, 12)
        if ifd + count_len > n:
            self.need = ifd + count_len
            return None
        end = ifd + count_len + _uint(buf, ifd, count_len, big) * entry_len
        if end > n:
            self.need = end
            return None
        tags = _ifd_tags(buf, ifd, big, bigtiff)
        if 0x0100 not in tags or 0x0101 not in tags:
            return _bad("tiff", "TIFF IFD0 has no ImageWidth/ImageLength tags")
        orientation = tags.get(0x0112, 1)
        return _sized("tiff", tags[0x0100], tags[0x0101], orientation if 1 <= orientation <= 8 else 1)


class _Bmp(_Parser):
    """BITMAPCOREHEADER (16-bit) or the larger headers (32-bit, negative height = top-down)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("bmp", "BMP")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        core = _uint(buf, 14, 4, False) == 12
        wanted = 22 if core else 26
        if len(buf) < wanted:
            self.need = wanted
            return None
        if core:
            return _sized("bmp", _uint(buf, 18, 2, False), _uint(buf, 20, 2, False))
        width = int.from_bytes(buf[18:22], "little", signed=True)
        height = int.from_bytes(buf[22:26], "little", signed=True)
        return _sized("bmp", width, abs(height))


class _Ico(_Parser):
    """ICO/CUR directory; 0 means 256; the largest entry is what a browser shows at full size."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("ico", "ICO")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        count = _uint(buf, 4, 2, False)
        wanted = 6 + 16 * count
        if len(buf) < wanted:
            self.need = wanted
            return None
        sizes = [(buf[6 + 16 * i] or 256, buf[7 + 16 * i] or 256) for i in range(count)]
        return _sized("ico", *max(sizes, key=lambda s: s[0] * s[1]))


class _Text(_Parser):
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
        return self._classify(buf, ending) or _bad(None, f"no recognisable text structure {ending}")

    def _classify(self, buf: bytearray, ending: str | None) -> ImageFacts | None:
        """Facts, or None while undecided; ``ending`` says how the stream stopped (None: it goes on)."""
        data: bytes | bytearray = buf
        if self.utf16:
            if len(buf) < 2 * _TEXT_WINDOW and ending is None:
                return None
            data = bytes(buf).decode("utf-16", "replace").encode("utf-8")
        pos = _skip_ws(data, 3 if data[:3] == b"\xef\xbb\xbf" else 0)
        if pos >= len(data):
            return None if ending is None else _not_image("blank body", self.content_type)
        if data[pos] == 0x3C:  # '<'
            facts = self._markup(data, pos, ending)
            if facts is not _NOT_MARKUP:
                return facts
        if len(data) < _TEXT_WINDOW and ending is None:
            return None
        if not _looks_text(data[:_TEXT_WINDOW]):
            return _bad(None, "unknown binary data (not an image format this probe knows)")
        if data[pos] in b"{[":
            return _not_image("JSON", self.content_type)
        return _not_image("text", self.content_type)

    def _markup(self, data: bytes | bytearray, pos: int, ending: str | None) -> ImageFacts | None:
        """Skip the prolog (XML declaration, comments, DOCTYPE) and judge the root element."""
        n = len(data)
        truncated = None if ending is None else _bad(None, f"markup without a root element {ending}")
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
                    return _not_image("HTML page", self.content_type)
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
                    return _svg(data, name.end(), ending)
                if local in _HTML_TAGS or self.content_type == "text/html":
                    return _not_image("HTML page", self.content_type)
                return _not_image(f"XML document <{local[:40]}>", self.content_type)


_NOT_MARKUP = ImageFacts(None, None, "unreadable", "not markup")  # sentinel: fall back to the text rules


def _skip_ws(data: bytes | bytearray, pos: int) -> int:
    while pos < len(data) and data[pos] in b" \t\r\n\f":
        pos += 1
    return pos


def _looks_text(sample: bytes | bytearray) -> bool:
    """No NUL and almost no control bytes: text in any ASCII-compatible encoding, not binary."""
    if 0 in sample:
        return False
    controls = sum(1 for byte in sample if byte in _TEXT_CONTROLS)
    return controls <= len(sample) // 100


def _svg(data: bytes | bytearray, start: int, ending: str | None) -> ImageFacts | None:
    """Size from the root <svg> tag: width/height in absolute units, else via the viewBox."""
    tag = _TAG_REST.match(data, start)
    if tag is None:
        return None if ending is None else _bad("svg", f"the <svg> tag does not close {ending}")
    attrs: dict[str, str] = {}
    for name, double, single in _ATTR.findall(data, start, tag.end()):
        attrs.setdefault(name.decode("utf-8", "replace"), (double or single).decode("utf-8", "replace"))
    width, height = _svg_length(attrs.get("width")), _svg_length(attrs.get("height"))
    box = _viewbox(attrs.get("viewBox"))
    if width is not None and height is not None:
        size = (width, height)
    elif box is not None and width is not None:
        size = (width, width * box[1] / box[0])
    elif box is not None and height is not None:
        size = (height * box[0] / box[1], height)
    elif box is not None:  # width/height missing or relative: the viewBox is the only size there is
        size = box
    else:
        return _bad("svg", "SVG has no absolute size (width/height missing or relative, no viewBox)")
    pixels = [math.floor(value + 0.5) for value in size]
    return _sized("svg", pixels[0], pixels[1])


def _svg_length(value: str | None) -> float | None:
    """CSS px for a length in absolute units (unitless = px); None for %, em, junk or <= 0."""
    if value is None:
        return None
    match = _SVG_LENGTH.fullmatch(value)
    if match is None:
        return None
    factor = _SVG_UNITS.get(match.group(2).lower())
    number = float(match.group(1))
    if factor is None or not math.isfinite(number) or number <= 0:
        return None
    pixels = number * factor
    return pixels if pixels < _MAX_DIMENSION else None


def _viewbox(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = [part for part in _VIEWBOX_SEP.split(value.strip()) if part]
    if len(parts) != 4:
        return None
    try:
        width, height = float(parts[2]), float(parts[3])
    except ValueError:
        return None
    if not (0 < width < _MAX_DIMENSION and 0 < height < _MAX_DIMENSION):
        return None
    return width, height


def _sniff(buf: bytearray, final: bool, content_type: str | None) -> _Parser | ImageFacts | None:
    """Pick a parser from the first bytes; None while too few bytes arrived to tell."""
    n = len(buf)
    if n == 0:
        return _not_image("empty body", content_type) if final else None
    if n < _SNIFF and not final:
        return None
    head = bytes(buf[:_SNIFF])
    if head.startswith(b"\xff\xd8\xff"):
        return _Jpeg()
    if head.startswith(_PNG_SIG):
        return _Png()
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _Gif()
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _WebP()
    if head[4:8] == b"ftyp":
        return _Bmff()
    if head[:4] in _TIFF_SIGS:
        return _Tiff(big=head[:2] == b"MM")
    if head[:2] == b"BM" and n >= 18 and _uint(head, 14, 4, False) in _BMP_DIB_SIZES:
        return _Bmp()
    if head[:4] in _ICO_SIGS and n >= 6 and _uint(head, 4, 2, False) > 0:
        return _Ico()
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _Text(content_type, utf16=True)
    truncated = _truncated_signature(head)
    if truncated is not None:
        return _bad(truncated, f"truncated {truncated.upper()} header: only {n} bytes")
    if head.startswith(b"%PDF-"):
        return _not_image("PDF document", content_type)
    if head.startswith(b"\x1f\x8b"):
        return _bad(None, "gzip-compressed body (Content-Encoding not undone?)")
    if head[1:4] == b"PNG" and head[4:8] == _PNG_SIG[4:]:
        return _bad(None, "corrupted PNG signature")
    if _looks_text(head):
        return _Text(content_type, utf16=False)
    return _bad(None, f"unknown binary format (starts with {head[:8].hex(' ')})")


def _truncated_signature(head: bytes) -> str | None:
    """The format whose signature this whole (short) buffer is a prefix of."""
    n = len(head)
    candidates = [(b"\xff\xd8\xff", "jpeg", 3), (_PNG_SIG, "png", 8), (b"GIF87a", "gif", 6)]
    candidates += [(b"GIF89a", "gif", 6)] + [(sig, "tiff", 4) for sig in _TIFF_SIGS]
    candidates += [(sig, "ico", 6) for sig in _ICO_SIGS]  # ICO needs its entry count too
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
        self._parser: _Parser | None = None
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
            self._result = self._step(final=True) or _bad(None, "no answer at the end of the stream")
        return self._result

    def _step(self, final: bool) -> ImageFacts | None:
        try:
            return self._attempt(final)
        except Exception as exc:  # last line of defence: hostile bytes must never crash the checker
            fmt = self._parser.fmt if self._parser is not None else None
            return _bad(fmt, f"parser error on corrupt header ({type(exc).__name__})")

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
