"""TIFF structures: the TIFF parser, and the EXIF orientation (a TIFF block) other formats embed.

JPEG, PNG and WebP carry EXIF as a small TIFF file, so its IFD reader lives here beside the
parser for TIFF images themselves.
"""

from __future__ import annotations

from monitor.probe.parser import Parser, bad, sized, uint
from monitor.types import ImageFacts

__all__ = ["TIFF_SIGS", "Tiff", "exif_orientation"]

TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def exif_orientation(tiff: bytes | bytearray) -> int:
    """Orientation (1-8) from an EXIF TIFF block; anything missing or invalid means 1 (as browsers do)."""
    if tiff[:6] == b"Exif\x00\x00":
        tiff = tiff[6:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    big = tiff[:2] == b"MM"
    if uint(tiff, 2, 2, big) != 42:
        return 1
    value = _ifd_tags(tiff, uint(tiff, 4, 4, big), big, bigtiff=False).get(0x0112, 1)
    return value if 1 <= value <= 8 else 1


def _ifd_tags(data: bytes | bytearray, ifd: int, big: bool, bigtiff: bool) -> dict[int, int]:
    """Width, length and orientation values of one (possibly partial) IFD; inline values only."""
    count_len, entry_len, count_field = (8, 20, 8) if bigtiff else (2, 12, 4)
    if ifd < 8 or ifd + count_len > len(data):
        return {}
    count = uint(data, ifd, count_len, big)
    count = min(count, (len(data) - ifd - count_len) // entry_len)
    found: dict[int, int] = {}
    for index in range(count):
        entry = ifd + count_len + index * entry_len
        tag = uint(data, entry, 2, big)
        if tag not in (0x0100, 0x0101, 0x0112) or tag in found:
            continue
        kind = uint(data, entry + 2, 2, big)
        if uint(data, entry + 4, count_field, big) < 1:
            continue
        value_at = entry + 4 + count_field
        width = {1: 1, 3: 2, 4: 4, 16: 8}.get(kind)
        if width is not None and (width <= 4 or bigtiff):
            found[tag] = uint(data, value_at, width, big)
    return found


class Tiff(Parser):
    """IFD0 ImageWidth/ImageLength/Orientation, classic TIFF or BigTIFF; the IFD may sit far away."""

    __slots__ = ("big",)

    def __init__(self, big: bool) -> None:
        super().__init__("tiff", "TIFF")
        self.big = big
        self.stage = "before IFD0"

    def advance(self, buf: bytearray) -> ImageFacts | None:
        n, big = len(buf), self.big
        bigtiff = uint(buf, 2, 2, big) == 43
        header = 16 if bigtiff else 8
        if n < header:
            self.need = header
            return None
        if bigtiff and (uint(buf, 4, 2, big) != 8 or uint(buf, 6, 2, big) != 0):
            return bad("tiff", "BigTIFF header has an unsupported offset size")
        ifd = uint(buf, 8, 8, big) if bigtiff else uint(buf, 4, 4, big)
        if ifd < header:
            return bad("tiff", f"TIFF IFD0 offset {ifd} points into the header")
        count_len, entry_len = (8, 20) if bigtiff else (2, 12)
        if ifd + count_len > n:
            self.need = ifd + count_len
            return None
        end = ifd + count_len + uint(buf, ifd, count_len, big) * entry_len
        if end > n:
            self.need = end
            return None
        tags = _ifd_tags(buf, ifd, big, bigtiff)
        if 0x0100 not in tags or 0x0101 not in tags:
            return bad("tiff", "TIFF IFD0 has no ImageWidth/ImageLength tags")
        orientation = tags.get(0x0112, 1)
        return sized("tiff", tags[0x0100], tags[0x0101], orientation if 1 <= orientation <= 8 else 1)
