"""WebP (a RIFF container): the size from its first chunk, the orientation from an EXIF chunk."""

from __future__ import annotations

from monitor.probe.parser import Parser, bad, show, sized, uint
from monitor.probe.tiff import exif_orientation
from monitor.types import ImageFacts

__all__ = ["WebP"]


class WebP(Parser):
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
            size = uint(buf, pos + 4, 4, False)
            if buf[pos : pos + 4] == b"EXIF":
                if pos + 8 + size > n:
                    self.need = pos + 8 + size
                    return None
                return sized("webp", *self.canvas, exif_orientation(buf[pos + 8 : pos + 8 + size]))
            self.pos = pos + 8 + size + (size & 1)

    def _first_chunk(self, buf: bytearray) -> ImageFacts | None:
        n = len(buf)
        if n < 20:
            self.need = 20
            return None
        kind = bytes(buf[12:16])
        wanted = {b"VP8 ": 30, b"VP8L": 25, b"VP8X": 30}.get(kind)
        if wanted is None:
            return bad("webp", f"WebP's first chunk is '{show(kind)}', not VP8/VP8L/VP8X")
        if n < wanted:
            self.need = wanted
            return None
        if kind == b"VP8 ":
            if buf[20] & 1:
                return bad("webp", "WebP VP8 bitstream does not start with a key frame")
            if buf[23:26] != b"\x9d\x01\x2a":
                return bad("webp", "WebP VP8 bitstream lacks its start code")
            return sized("webp", uint(buf, 26, 2, False) & 0x3FFF, uint(buf, 28, 2, False) & 0x3FFF)
        if kind == b"VP8L":
            if buf[20] != 0x2F:
                return bad("webp", "WebP VP8L bitstream lacks its signature byte")
            bits = uint(buf, 21, 4, False)
            return sized("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        size = uint(buf, 16, 4, False)
        canvas = (uint(buf, 24, 3, False) + 1, uint(buf, 27, 3, False) + 1)
        self.provisional = sized("webp", *canvas)
        if size < 10 or not buf[20] & 0x08:  # no EXIF flag: the canvas is the answer
            return self.provisional
        self.canvas = canvas
        self.pos = 20 + size + (size & 1)
        self.end = 8 + uint(buf, 4, 4, False)
        self.stage = "before the EXIF chunk"
        return self.advance(buf)
