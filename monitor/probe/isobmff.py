"""AVIF and HEIC/HEIF (ISO base media files): brands from ftyp, the primary item's size from meta.

The box walking is its own small world (ispe, clap and irot properties tied to items through
ipma), so it lives apart from the formats with fixed headers.
"""

from __future__ import annotations

from monitor.probe.parser import Parser, bad, show, sized, uint
from monitor.types import ImageFacts

__all__ = ["Bmff"]

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS = _HEIC_BRANDS | {b"mif1", b"msf1", b"mif2", b"mif3", b"miaf", b"heif"}
_META_CHILDREN = frozenset({b"hdlr", b"pitm", b"iloc", b"iinf", b"iprp", b"idat", b"iref", b"dinf"})


class Bmff(Parser):
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
            size = uint(buf, pos, 4, True)
            kind = bytes(buf[pos + 4 : pos + 8])
            header = 8
            if size == 1:
                if pos + 16 > n:
                    self.need = pos + 16
                    return None
                size, header = uint(buf, pos + 8, 8, True), 16
            elif size == 0:
                detail = f"{self.label} box '{show(kind)}' runs to the end of the file, no meta box"
                return bad(self.fmt, detail)
            if size < header:
                return bad(self.fmt, f"{self.label} box at byte {pos} has impossible size {size}")
            end = pos + size
            if pos == 0 or kind == b"meta":
                if pos == 0 and size > 4096:
                    return bad(self.fmt, f"implausible ftyp box of {size} bytes")
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
            return bad(None, f"ISO media file with brand '{show(major)}' is not an AVIF/HEIF image")
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
                primary = uint(meta, begin + 4, id_len, True)
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
                return bad(self.fmt, f"{self.label} meta box has no ispe (image size) property")
            size = max(known, key=lambda s: s[0] * s[1])
        return sized(self.fmt or "heif", *size)


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """Child boxes (type, payload start, payload end) of a fully buffered ISO BMFF container."""
    found: list[tuple[bytes, int, int]] = []
    pos = start
    end = min(end, len(data))
    while pos + 8 <= end:
        size = uint(data, pos, 4, True)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size, header = uint(data, pos + 8, 8, True), 16
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
    for _ in range(uint(data, begin + 4, 4, True)):
        if pos + id_len + 1 > end:
            break
        item = uint(data, pos, id_len, True)
        count = data[pos + id_len]
        pos += id_len + 1
        indices: list[int] = []
        for _ in range(count):
            if pos + 1 + wide > end:
                break
            indices.append(uint(data, pos, 2, True) & 0x7FFF if wide else data[pos] & 0x7F)
            pos += 1 + wide
        result.setdefault(item, indices)
    return result


def _ispe(data: bytes, begin: int, end: int) -> tuple[int, int] | None:
    if end - begin < 12:
        return None
    return uint(data, begin + 4, 4, True), uint(data, begin + 8, 4, True)


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
            wn, wd, hn, hd = (uint(data, begin + 4 * i, 4, True) for i in range(4))
            if wd and hd:
                width, height = (2 * wn + wd) // (2 * wd), (2 * hn + hd) // (2 * hd)
                if 0 < width <= size[0] and 0 < height <= size[1]:
                    size = (width, height)
    return size
