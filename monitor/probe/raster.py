"""The fixed-header raster formats: PNG, GIF, BMP and ICO, whose size sits at a known offset.

PNG is the only one that reads on (to an eXIf chunk before the image data); the others answer
from their first few dozen bytes.
"""

from __future__ import annotations

import zlib

from monitor.probe.parser import Parser, bad, show, sized, uint
from monitor.probe.tiff import exif_orientation
from monitor.types import ImageFacts

__all__ = ["BMP_DIB_SIZES", "ICO_SIGS", "PNG_SIG", "Bmp", "Gif", "Ico", "Png"]

PNG_SIG = b"\x89PNG\r\n\x1a\n"
ICO_SIGS = (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")
BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


class Png(Parser):
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
            length = uint(buf, pos, 4, True)
            kind = bytes(buf[pos + 4 : pos + 8])
            if self.size is None:
                if kind == b"CgBI" and pos == 8:  # Apple's "fried" PNG puts CgBI before IHDR
                    pos += 12 + length
                    continue
                if kind != b"IHDR" or length != 13:
                    return bad("png", f"PNG does not start with a valid IHDR chunk (found '{show(kind)}')")
                if pos + 25 > n:
                    self.need = pos + 25
                    break
                if zlib.crc32(buf[pos + 4 : pos + 21]) != uint(buf, pos + 21, 4, True):
                    return bad("png", "PNG IHDR chunk fails its CRC check (corrupt header)")
                self.size = (uint(buf, pos + 8, 4, True), uint(buf, pos + 12, 4, True))
                self.provisional = sized("png", *self.size)
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
                return sized("png", *self.size, exif_orientation(buf[pos + 8 : pos + 8 + length]))
            pos += 12 + length
        self.pos = pos
        return None


class Gif(Parser):
    """The logical screen descriptor is the canvas browsers lay out."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("gif", "GIF")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        if len(buf) < 10:
            self.need = 10
            return None
        return sized("gif", uint(buf, 6, 2, False), uint(buf, 8, 2, False))


class Bmp(Parser):
    """BITMAPCOREHEADER (16-bit) or the larger headers (32-bit, negative height = top-down)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("bmp", "BMP")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        core = uint(buf, 14, 4, False) == 12
        wanted = 22 if core else 26
        if len(buf) < wanted:
            self.need = wanted
            return None
        if core:
            return sized("bmp", uint(buf, 18, 2, False), uint(buf, 20, 2, False))
        width = int.from_bytes(buf[18:22], "little", signed=True)
        height = int.from_bytes(buf[22:26], "little", signed=True)
        return sized("bmp", width, abs(height))


class Ico(Parser):
    """ICO/CUR directory; 0 means 256; the largest entry is what a browser shows at full size."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("ico", "ICO")

    def advance(self, buf: bytearray) -> ImageFacts | None:
        count = uint(buf, 4, 2, False)
        wanted = 6 + 16 * count
        if len(buf) < wanted:
            self.need = wanted
            return None
        sizes = [(buf[6 + 16 * i] or 256, buf[7 + 16 * i] or 256) for i in range(count)]
        return sized("ico", *max(sizes, key=lambda s: s[0] * s[1]))
