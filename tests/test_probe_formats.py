"""The short-header formats of ``monitor.probe.fixed``: built the way each specification lays its
header out, fed whole and byte by byte, truncated, and corrupt."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from monitor.probe.fixed import JP2_SIG, JXL_SIG, KTX2_SIG, KTX_SIG
from monitor.probe.sniff import ImageProbe, probe_bytes
from monitor.types import Size


def _psd(w: int, h: int, version: int = 1) -> bytes:
    return b"8BPS" + struct.pack(">H6xHII", version, 3, h, w) + struct.pack(">HH", 8, 3) + bytes(64)


def _dds(w: int, h: int) -> bytes:
    return b"DDS " + struct.pack("<IIII", 124, 0x1007, h, w) + bytes(108)


def _ktx1(w: int, h: int, big: bool = False) -> bytes:
    order = ">" if big else "<"
    fields = struct.pack(order + "I" * 13, 0x04030201, 0x1401, 1, 0x1908, 0x8058, 0x1908, w, h, 0, 0, 1, 1, 0)
    return KTX_SIG + fields + bytes(16)


def _ktx2(w: int, h: int) -> bytes:
    return KTX2_SIG + struct.pack("<IIIIII", 37, 1, w, h, 0, 0) + bytes(32)


def _j2k(w: int, h: int, x0: int = 0, y0: int = 0) -> bytes:
    return (
        b"\xff\x4f\xff\x51"
        + struct.pack(">HHIIIIIIIIH", 41, 0, w + x0, h + y0, x0, y0, w, h, 0, 0, 3)
        + bytes(16)
    )


def _jp2(w: int, h: int) -> bytes:
    ftyp = struct.pack(">I", 20) + b"ftypjp2 " + struct.pack(">I", 0) + b"jp2 "
    ihdr = struct.pack(">I", 22) + b"ihdr" + struct.pack(">IIHBBBB", h, w, 3, 7, 7, 0, 0)
    jp2h = struct.pack(">I", 8 + len(ihdr)) + b"jp2h" + ihdr
    return JP2_SIG + ftyp + jp2h + _j2k(w, h)


def _bits(*fields: tuple[int, int]) -> bytes:
    """LSB-first bit packing, as JPEG XL writes its headers."""
    value, pos = 0, 0
    for width, field in fields:
        value |= field << pos
        pos += width
    return value.to_bytes(16, "little")


def _jxl_small(w8: int, h8: int) -> bytes:
    return b"\xff\x0a" + _bits((1, 1), (5, h8 - 1), (3, 0), (5, w8 - 1))


def _jxl_large(w: int, h: int) -> bytes:
    # selector 1: 13 bits + 1
    return b"\xff\x0a" + _bits((1, 0), (2, 1), (13, h - 1), (3, 0), (2, 1), (13, w - 1))


def _jxl_ratio(h: int, ratio: int) -> bytes:
    return b"\xff\x0a" + _bits((1, 0), (2, 1), (13, h - 1), (3, ratio))


def _jxl_container(codestream: bytes, partial: bool = False) -> bytes:
    ftyp = struct.pack(">I", 20) + b"ftypjxl " + struct.pack(">I", 0) + b"jxl "
    body = (b"\x80\x00\x00\x00" if partial else b"") + codestream
    box = struct.pack(">I", 8 + len(body)) + (b"jxlp" if partial else b"jxlc") + body
    return JXL_SIG + ftyp + box


def _icns(*entries: tuple[bytes, int]) -> bytes:
    body = b"".join(struct.pack(">4sI", kind, 8 + n) + bytes(n) for kind, n in entries)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


VALID = {
    "psd": (_psd(640, 480), Size(640, 480)),
    "psb": (_psd(40000, 30000, 2), Size(40000, 30000)),
    "dds": (_dds(512, 256), Size(512, 256)),
    "ktx": (_ktx1(128, 64), Size(128, 64)),
    "ktx-big-endian": (_ktx1(128, 64, big=True), Size(128, 64)),
    "ktx-1d": (_ktx1(128, 0), Size(128, 1)),
    "ktx2": (_ktx2(300, 200), Size(300, 200)),
    "j2k": (_j2k(1024, 768), Size(1024, 768)),
    "j2k-offset": (_j2k(100, 50, 7, 9), Size(100, 50)),
    "jp2": (_jp2(800, 600), Size(800, 600)),
    "jxl-small": (_jxl_small(4, 3), Size(32, 24)),
    "jxl-large": (_jxl_large(1920, 1080), Size(1920, 1080)),
    "jxl-ratio-16-9": (_jxl_ratio(1080, 5), Size(1920, 1080)),
    "jxl-container": (_jxl_container(_jxl_large(1200, 800)), Size(1200, 800)),
    "jxl-container-jxlp": (_jxl_container(_jxl_large(640, 480), partial=True), Size(640, 480)),
    "pbm": (b"P1\n# made by hand\n5 3\n0 1 0 1 0\n", Size(5, 3)),
    "ppm": (b"P6 640\t480 255\n" + bytes(64), Size(640, 480)),
    "pam": (
        b"P7\nWIDTH 227\nHEIGHT 149\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(32),
        Size(227, 149),
    ),
    "icns": (_icns((b"is32", 100), (b"ic08", 300), (b"il32", 50)), Size(256, 256)),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_formats_whole_and_byte_by_byte(name: str) -> None:
    """Each format gives its size whole and fed one byte at a time."""
    data, size = VALID[name]
    facts = probe_bytes(data)
    assert (facts.error, facts.size) == (None, size), facts
    probe = ImageProbe()
    got = None
    for i in range(len(data)):
        got = probe.feed(data[i : i + 1])
        if got is not None:
            break
    got = got or probe.finish()
    assert (got.error, got.size) == (None, size), got


@pytest.mark.parametrize(
    "data",
    [
        _psd(0, 480),
        _psd(640, 480)[:20],
        _dds(512, 256)[:18],
        _j2k(1024, 768)[:20],
        _jxl_large(1920, 1080)[:6],
        b"P6\n640",
        b"P6\nabc def\n",
        b"P7\nDEPTH 3\nENDHDR\n",
        _icns((b"zzzz", 40)),
        _jxl_container(b"\x00\x00" + _jxl_large(10, 10)),
    ],
)
def test_truncated_or_corrupt_headers_are_unreadable(data: bytes) -> None:
    """A header cut short or carrying no usable size is unreadable, never a guess or a crash."""
    assert probe_bytes(data).error == "unreadable"


def test_pnm_is_not_taken_for_text() -> None:
    """A text body that merely starts with "P" is still a document, not an image."""
    assert probe_bytes(b"Page not found\n").error == "not_image"


@pytest.mark.parametrize(
    ("mode", "rle"),
    [("RGB", False), ("RGBA", False), ("L", False), ("P", False), ("RGB", True), ("L", True), ("P", True)],
)
def test_tga_files_written_by_pillow(mode: str, rle: bool) -> None:
    """TGA has no signature: Pillow's encoder (true-colour, grey and colour-mapped, raw and RLE)
    writes headers the probe must know from their fields alone, whole and byte by byte."""
    out = io.BytesIO()
    Image.new(mode, (301, 17)).save(out, format="TGA", compression="tga_rle" if rle else None)
    data = out.getvalue()
    whole = probe_bytes(data)
    assert whole.size == Size(301, 17) and whole.format == "tga"
    probe = ImageProbe()
    facts = None
    for i in range(len(data)):
        facts = probe.feed(data[i : i + 1])
        if facts is not None:
            break
    assert facts is not None and facts.size == Size(301, 17)


@pytest.mark.parametrize(
    "head",
    [
        bytes([0, 0, 2, 0, 0, 0, 0, 1]) + bytes(10),  # a colour-map spec without a colour map
        bytes([0, 1, 2]) + bytes(15),  # a colour map on a true-colour type
        bytes([0, 0, 4]) + bytes(15),  # no such image type
        bytes([0, 0, 2]) + bytes(9) + struct.pack("<HH", 10, 10) + bytes([7, 0]),  # no such depth
        bytes([0, 0, 2]) + bytes(9) + struct.pack("<HH", 0, 10) + bytes([24, 0]),  # empty
        bytes([0, 0, 2]) + bytes(9) + struct.pack("<HH", 10, 10) + bytes([24, 0x40]),  # interleaved
    ],
)
def test_bytes_that_only_resemble_a_tga_header_are_not_taken_for_one(head: bytes) -> None:
    facts = probe_bytes(head + bytes(64))
    assert facts.format != "tga" and facts.size is None
