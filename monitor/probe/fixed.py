"""More formats whose size sits in a short header, as other image-size libraries read them:
PSD/PSB, DDS, KTX and KTX2, PNM (PBM/PGM/PPM/PAM), ICNS, JPEG 2000 (JP2 container and J2K
codestream), JPEG XL (codestream and container) and TGA.

TGA has no signature at its start (its optional footer sits at the end of the file), so it is
known by a header whose every field holds one of the values the format allows; random bytes
pass that by chance about once in 10^17.

Each answers from its first few dozen bytes, except ICNS, whose largest icon is known only after
its entry headers (read to the cap; the largest so far is provisional). JPEG XL orientation is
not read (it sits after the size, in bit-packed metadata).
"""

from __future__ import annotations

import re
from abc import abstractmethod

from monitor.probe.parser import Parser, bad, sized, uint
from monitor.types import ImageFacts

__all__ = [
    "JP2_SIG",
    "JXL_SIG",
    "KTX2_SIG",
    "KTX_SIG",
    "Dds",
    "Icns",
    "J2k",
    "Jp2",
    "Jxl",
    "Ktx",
    "Pnm",
    "Psd",
    "Tga",
    "sniff_more",
]

KTX_SIG = b"\xabKTX 11\xbb\r\n\x1a\n"
KTX2_SIG = b"\xabKTX 20\xbb\r\n\x1a\n"
JP2_SIG = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
JXL_SIG = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_PNM = re.compile(rb"P[1-7]\s")
_PNM_TOKEN = re.compile(rb"\s*(?:#[^\n]*\n\s*)*(\S+)")
# ICNS entry types and the icon edge they hold (as image-size reads them)
_ICNS: dict[bytes, int] = {
    **dict.fromkeys((b"icm#", b"icm4", b"icm8", b"ics#", b"ics4", b"ics8", b"is32", b"s8mk", b"icp4"), 16),
    **dict.fromkeys((b"ICON", b"ICN#", b"icl4", b"icl8", b"il32", b"l8mk", b"icp5", b"ic11", b"ic12"), 32),
    **dict.fromkeys((b"ich#", b"ich4", b"ich8", b"ih32", b"h8mk"), 48),
    **dict.fromkeys((b"icp6",), 64),
    **dict.fromkeys((b"it32", b"t8mk", b"ic07"), 128),
    **dict.fromkeys((b"ic08", b"ic13"), 256),
    **dict.fromkeys((b"ic09", b"ic14"), 512),
    **dict.fromkeys((b"ic10",), 1024),
}
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def sniff_more(head: bytes) -> Parser | None:
    """The parser for these formats' signatures, or None."""
    if head.startswith(b"8BPS"):
        return Psd()
    if head.startswith(b"DDS |\x00\x00\x00"):
        return Dds()
    if head.startswith((KTX_SIG, KTX2_SIG)):
        return Ktx(head.startswith(KTX2_SIG))
    if head.startswith(b"icns"):
        return Icns()
    if head.startswith(JP2_SIG):
        return Jp2()
    if head.startswith(b"\xff\x4f\xff\x51"):
        return J2k()
    if head.startswith(b"\xff\x0a") or head.startswith(JXL_SIG):
        return Jxl()
    if _PNM.match(head):
        return Pnm()
    if looks_tga(head):
        return Tga()
    return None


_TGA_TYPES = frozenset({1, 2, 3, 9, 10, 11})  # colour-mapped, true-colour, grey; raw or RLE
_TGA_DEPTHS = frozenset({8, 15, 16, 24, 32})


def looks_tga(head: bytes) -> bool:
    """An 18-byte TGA header: a known image type, a colour map exactly when the type has one
    (with a known entry size; none: its 5 bytes are zero), a known depth, a non-empty size, and
    descriptor bits 6-7 (obsolete interleaving) clear."""
    if len(head) < 18 or head[1] not in (0, 1) or head[2] not in _TGA_TYPES:
        return False
    mapped = head[2] in (1, 9)
    if head[1] != int(mapped):
        return False
    if mapped and head[7] not in (15, 16, 24, 32):
        return False
    if not mapped and head[3:8] != bytes(5):
        return False
    width, height = uint(head, 12, 2, False), uint(head, 14, 2, False)
    return head[16] in _TGA_DEPTHS and width > 0 and height > 0 and head[17] & 0xC0 == 0


class _Fixed(Parser):
    """A size at a fixed offset: ``need`` bytes, then ``read``."""

    __slots__ = ()
    wanted = 0

    def advance(self, buf: bytearray) -> ImageFacts | None:
        if len(buf) < self.wanted:
            self.need = self.wanted
            return None
        return self.read(buf)

    @abstractmethod
    def read(self, buf: bytearray) -> ImageFacts:
        """The facts, from a buffer holding at least ``wanted`` bytes."""


class Psd(_Fixed):
    __slots__ = ()
    wanted = 22

    def __init__(self) -> None:
        super().__init__("psd", "PSD")

    def read(self, buf: bytearray) -> ImageFacts:
        return sized("psd", uint(buf, 18, 4, True), uint(buf, 14, 4, True))


class Dds(_Fixed):
    __slots__ = ()
    wanted = 20

    def __init__(self) -> None:
        super().__init__("dds", "DDS")

    def read(self, buf: bytearray) -> ImageFacts:
        return sized("dds", uint(buf, 16, 4, False), uint(buf, 12, 4, False))


class Ktx(_Fixed):
    """KTX 1 (endianness word at 12, size at 36) or KTX 2 (little-endian, size at 20)."""

    __slots__ = ("v2",)

    def __init__(self, v2: bool) -> None:
        super().__init__("ktx", "KTX")
        self.v2 = v2

    @property
    def wanted(self) -> int:  # type: ignore[override]
        return 28 if self.v2 else 44

    def read(self, buf: bytearray) -> ImageFacts:
        if self.v2:
            return sized("ktx", uint(buf, 20, 4, False), max(1, uint(buf, 24, 4, False)))
        big = buf[12:16] == b"\x04\x03\x02\x01"
        return sized("ktx", uint(buf, 36, 4, big), max(1, uint(buf, 40, 4, big)))  # 1D textures: height 0


class J2k(_Fixed):
    """The SIZ marker segment right after SOC: reference grid size minus the image offset."""

    __slots__ = ()
    wanted = 24

    def __init__(self) -> None:
        super().__init__("j2k", "JPEG 2000 codestream")

    def read(self, buf: bytearray) -> ImageFacts:
        width = uint(buf, 8, 4, True) - uint(buf, 16, 4, True)
        height = uint(buf, 12, 4, True) - uint(buf, 20, 4, True)
        return sized("j2k", width, height)


class Tga(_Fixed):
    __slots__ = ()
    wanted = 18

    def __init__(self) -> None:
        super().__init__("tga", "TGA")

    def read(self, buf: bytearray) -> ImageFacts:
        return sized("tga", uint(buf, 12, 2, False), uint(buf, 14, 2, False))


class Jp2(Parser):
    """The ``ihdr`` box inside the ``jp2h`` header box: height, then width."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("jp2", "JPEG 2000")
        self.stage = "before the jp2h/ihdr boxes"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        at = buf.find(b"jp2h")
        found = buf.find(b"ihdr", at) if at >= 0 else -1
        if found < 0 or len(buf) < found + 12:
            self.need = max(len(buf) + 1, found + 12, 64)
            return None
        return sized("jp2", uint(buf, found + 8, 4, True), uint(buf, found + 4, 4, True))


class Pnm(Parser):
    """Netpbm: ``P1``-``P6`` then width and height as text (comments allowed); ``P7`` (PAM) has
    ``WIDTH``/``HEIGHT`` lines."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("pnm", "PNM")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        data = bytes(buf[:512])
        if data[:2] == b"P7":
            fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)\s", data, re.MULTILINE))
            if b"WIDTH" in fields and b"HEIGHT" in fields:
                return sized("pnm", int(fields[b"WIDTH"]), int(fields[b"HEIGHT"]))
            if b"ENDHDR" in data or len(buf) >= 512:
                return bad("pnm", "PAM header without WIDTH and HEIGHT")
        else:
            tokens: list[bytes] = []
            pos = 2
            while len(tokens) < 2:
                match = _PNM_TOKEN.match(data, pos)
                if match is None or match.end() >= len(data):  # a token must be followed by whitespace
                    break
                tokens.append(match.group(1))
                pos = match.end()
            if len(tokens) == 2:
                if not all(token.isdigit() for token in tokens):
                    return bad("pnm", "PNM header without a numeric width and height")
                return sized("pnm", int(tokens[0]), int(tokens[1]))
            if len(buf) >= 512:
                return bad("pnm", "no PNM size within its first 512 bytes")
        self.need = len(buf) + 1
        return None


class Icns(Parser):
    """Entry headers (type, length) after the 8-byte file header; the largest known icon wins."""

    __slots__ = ("best", "pos")
    elastic = True

    def __init__(self) -> None:
        super().__init__("icns", "ICNS")
        self.pos = 8
        self.best = 0
        self.stage = "reading its icon entries"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        total = uint(buf, 4, 4, True) if len(buf) >= 8 else 0
        pos = self.pos
        while pos + 8 <= len(buf) and pos < total:
            length = uint(buf, pos + 4, 4, True)
            self.best = max(self.best, _ICNS.get(bytes(buf[pos : pos + 4]), 0))
            if length < 8:
                break
            pos += length
        self.pos = pos
        if self.best:
            self.provisional = sized("icns", self.best, self.best)
        if pos >= total or (pos + 8 <= len(buf) and uint(buf, pos + 4, 4, True) < 8):
            return self.provisional or bad("icns", "ICNS without a known icon entry")
        self.need = pos + 8
        return None


class Jxl(Parser):
    """The SizeHeader at the start of the codestream (after ``FF 0A``), in a bare codestream or in
    the container's first ``jxlc``/``jxlp`` box."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("jxl", "JPEG XL")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        found = _jxl_codestream(buf) if buf.startswith(JXL_SIG) else 0
        if found is None:
            if len(buf) >= 4096:
                return bad("jxl", "no jxlc/jxlp box in the first 4 KB")
            self.need = len(buf) + 1
            return None
        start = found
        if len(buf) < start + 2 + 12:
            self.need = start + 14
            return None
        if buf[start : start + 2] != b"\xff\x0a":
            return bad("jxl", "JPEG XL codestream does not start with FF 0A")
        return _jxl_size(bytes(buf[start + 2 : start + 14]))


def _jxl_codestream(buf: bytearray) -> int | None:
    """Offset of the codestream inside the container, None while its box has not arrived."""
    pos = 0
    while pos + 8 <= len(buf):
        size, kind = uint(buf, pos, 4, True), bytes(buf[pos + 4 : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(buf):
                return None
            size, header = uint(buf, pos + 8, 8, True), 16
        if kind == b"jxlc":
            return pos + header
        if kind == b"jxlp":
            return pos + header + 4  # a 4-byte part index precedes the codestream
        if size < header:
            return None
        pos += size
    return None


def _jxl_size(data: bytes) -> ImageFacts:
    bits = int.from_bytes(data, "little")
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        value = (bits >> pos) & ((1 << n) - 1)
        pos += n
        return value

    def u32() -> int:
        return 1 + take((9, 13, 18, 30)[take(2)])

    small = take(1)
    height = (take(5) + 1) * 8 if small else u32()
    ratio = take(3)
    if ratio:
        num, den = _JXL_RATIOS[ratio]
        width = height * num // den
    else:
        width = (take(5) + 1) * 8 if small else u32()
    return sized("jxl", width, height)
