"""JPEG: the size from the first frame header (SOFn), turned by an EXIF orientation found before it."""

from __future__ import annotations

from monitor.probe.parser import Parser, bad, sized, uint
from monitor.probe.tiff import exif_orientation
from monitor.types import ImageFacts

__all__ = ["Jpeg"]

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC are not frames


class Jpeg(Parser):
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
                return bad("jpeg", f"JPEG ends (EOI at byte {pos}) before any SOF marker")
            if marker == 0xDA:
                return bad("jpeg", f"JPEG scan data (SOS at byte {pos}) starts before any SOF marker")
            if pos + 4 > n:
                self.need = pos + 4
                break
            length = uint(buf, pos + 2, 2, True)
            if length < 2:
                return bad("jpeg", f"JPEG segment at byte {pos} has impossible length {length}")
            if marker in _JPEG_SOF:
                if length < 8:
                    return bad("jpeg", f"JPEG SOF segment at byte {pos} is too short ({length})")
                if pos + 9 > n:
                    self.need = pos + 9
                    break
                height = uint(buf, pos + 5, 2, True)
                width = uint(buf, pos + 7, 2, True)
                return sized("jpeg", width, height, self.orientation)
            end = pos + 2 + length
            if marker == 0xE1 and not self.exif_seen:
                if end > n:
                    self.need = end
                    break
                if buf[pos + 4 : pos + 10] == b"Exif\x00\x00":
                    self.exif_seen = True  # the first EXIF block wins, as in Pillow
                    self.orientation = exif_orientation(buf[pos + 10 : end])
            pos = end
        self.pos = pos
        return None
