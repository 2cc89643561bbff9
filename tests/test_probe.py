"""monitor.probe (entry: probe.sniff): real-world images from the manifest, hostile bytes, streaming cost."""

from __future__ import annotations

import array
import io
import json
import random
import struct
import sys
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from monitor.probe.sniff import DEFAULT_CAP, ImageProbe, probe_bytes
from monitor.types import ImageFacts, Size

IMAGES = Path(__file__).parent / "data" / "images"
MANIFEST = json.loads((IMAGES / "manifest.json").read_text())
ENTRIES = {entry["file"]: entry for entry in MANIFEST["files"]}
DATA = {name: (IMAGES / name).read_bytes() for name in ENTRIES}
FORMATS = {"jpeg", "png", "gif", "webp", "avif", "heif", "bmp", "tiff", "ico", "svg"}

# Manifest entries whose displayed size is null in at least one axis, and what the probe answers.
# A Size is a deliberate answer; "unreadable" means no size can honestly be given.
SPECIAL: dict[str, Size | str] = {
    # ftyp lists no compatible brands and meta lacks hdlr, so libavif refuses it, but the ispe box is
    # intact and exiftool and imagesize both read 123x456: a header probe reports the header.
    "image-size/valid/heif/sample-garbled.avif": Size(123, 456),
    # viewBox only: the viewBox is the only size the file states (aspect-correct for size checks).
    "image-size/valid/svg/viewbox.svg": Size(123, 456),
    # width 123px plus a 246x912 viewBox: height by the ratio (manifest: height_px_from_viewbox_ratio).
    "image-size/valid/svg/viewbox-width.svg": Size(123, 456),
    # width=100% is relative, so it is treated as missing: width by the ratio (width_px_from_viewbox_ratio).
    "image-size/valid/svg/percentage.svg": Size(123, 456),
    "image-size/invalid/malformed.svg": "unreadable",  # broken quoting: no width/height/viewBox survive
    "image-size/invalid/width.svg": "unreadable",  # width only, no height and no viewBox to derive it
    "image-size/invalid/sample.png": "unreadable",  # first chunk is IHDO, not IHDR
    # BigTIFF is parsed (8-byte offsets); exiftool's IFD0 says 123x456 where Pillow cannot identify it.
    "image-size/valid/tiff/bigtiff-big-endian.tiff": Size(123, 456),
    "pillow/broken.png": "unreadable",  # garbage where IHDR should be
    "pillow/zero_width.gif": "unreadable",  # logical screen 0x32
    # Logical screen 32x32 is the GIF's layout size in browsers; Pillow grows its canvas to fit a frame
    # that lies outside and then refuses the file as a decompression bomb.
    "pillow/decompression_bomb.gif": Size(32, 32),
    # BI_PNG compression: Pillow cannot decode the payload, but the BITMAPV5HEADER size is valid.
    "pillow/bmp/q/rgb24png.bmp": Size(127, 64),
    "pngsuite/xs1n0g01.png": "unreadable",  # corrupted signature: not recognisably PNG
    "pngsuite/xhdn0g08.png": "unreadable",  # IHDR CRC mismatch: decoders reject the file
}


def expected(name: str) -> Size | str:
    if name in SPECIAL:
        return SPECIAL[name]
    entry = ENTRIES[name]
    return Size(entry["displayed_width"], entry["displayed_height"])


def feed_all(probe: ImageProbe, chunks: Iterable[bytes]) -> ImageFacts:
    """Feed like the checker does: stop at the first answer, else finish at the end of the stream."""
    for chunk in chunks:
        facts = probe.feed(chunk)
        if facts is not None:
            return facts
    return probe.finish()


def one_byte_chunks(data: bytes) -> Iterable[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 2, 3, 7, 100, 1000, 4096, 65536])
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(data[pos : pos + size])
        pos += size
    chunks.append(data[pos:])
    return chunks


def check(facts: ImageFacts, want: Size | str) -> None:
    if isinstance(want, Size):
        assert facts.error is None, facts
        assert facts.size == want
        assert facts.format in FORMATS
    else:
        assert facts.error == want, facts
        assert facts.size is None


def assert_sane(facts: ImageFacts, probe: ImageProbe, cap: int) -> None:
    """Invariants for any input: a valid verdict, within the cap, and no internal parser failure."""
    assert isinstance(facts, ImageFacts)
    assert probe.bytes_seen <= cap
    assert "parser error" not in facts.detail
    if facts.error is None:
        assert facts.format in FORMATS
        assert facts.size is not None and facts.size.width > 0 and facts.size.height > 0
    else:
        assert facts.error in ("not_image", "unreadable")
        assert facts.size is None and facts.detail
    assert probe.finish() == facts
    assert probe.feed(b"more bytes") == facts


def test_special_table_covers_exactly_the_undetermined_manifest_entries() -> None:
    """Every manifest entry with a null displayed dimension has a documented decision, and no other does."""
    undetermined = {
        name for name, e in ENTRIES.items() if e["displayed_width"] is None or e["displayed_height"] is None
    }
    assert set(SPECIAL) == undetermined


def test_special_sizes_agree_with_the_manifest_where_it_knows_one_axis() -> None:
    """Where the manifest knows one displayed axis of a special entry, the decided size keeps it."""
    for name, want in SPECIAL.items():
        entry = ENTRIES[name]
        if isinstance(want, Size):
            assert entry["displayed_width"] in (None, want.width)
            assert entry["displayed_height"] in (None, want.height)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_manifest_image_fed_whole(name: str) -> None:
    """A real image given in one piece yields the manifest's displayed size (or the documented decision)."""
    facts = probe_bytes(DATA[name])
    check(facts, expected(name))
    if facts.error is None and ENTRIES[name]["format"]:
        assert facts.format == ENTRIES[name]["format"].lower()


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_manifest_image_fed_one_byte_at_a_time(name: str) -> None:
    """Byte-by-byte feeding gives the same answer as feeding the whole file."""
    probe = ImageProbe()
    facts = feed_all(probe, one_byte_chunks(DATA[name]))
    check(facts, expected(name))
    assert facts == probe_bytes(DATA[name])


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_manifest_image_fed_in_random_chunks(name: str) -> None:
    """Chunks of random sizes give the same answer as feeding the whole file."""
    rng = random.Random(name)
    for _ in range(3):
        probe = ImageProbe()
        facts = feed_all(probe, random_chunks(DATA[name], rng))
        check(facts, expected(name))
        assert facts == probe_bytes(DATA[name])


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_truncated_manifest_image_is_unreadable_or_right(name: str) -> None:
    """A prefix of a real image never yields a wrong size: it is unreadable or already correct."""
    data = DATA[name]
    want = expected(name)
    rng = random.Random(name)
    cuts = set(range(1, min(len(data), 96))) | {rng.randrange(1, len(data)) for _ in range(24)}
    for cut in sorted(cuts):
        facts = probe_bytes(data[:cut])
        if facts.error is None:
            assert isinstance(want, Size) and facts.size == want, (cut, facts)
        else:
            assert facts.size is None
            if ENTRIES[name]["format"] is not None:  # a recognisable image never turns into a document
                assert facts.error == "unreadable", (cut, facts)


JPEGS = sorted(name for name, e in ENTRIES.items() if "jpeg" in e.get("details", {}))


@pytest.mark.parametrize("name", JPEGS)
def test_jpeg_answer_needs_exactly_the_sof_header(name: str) -> None:
    """A JPEG is answered once the SOF marker's height and width fields arrive, not a byte earlier."""
    sof = ENTRIES[name]["details"]["jpeg"]["sof"]["offset"]
    assert ENTRIES[name]["details"]["jpeg"]["bytes_before_sof"] == sof
    data = DATA[name]
    assert probe_bytes(data[:sof]).error == "unreadable"
    assert probe_bytes(data[: sof + 8]).error == "unreadable"
    check(probe_bytes(data[: sof + 9]), expected(name))
    probe = ImageProbe()
    feed_all(probe, one_byte_chunks(data))
    assert probe.bytes_seen == sof + 9


def tiff_ifd0_end(data: bytes) -> int:
    """End of IFD0 computed from the TIFF header (classic or BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack_from(order + "H", data, 2)[0] == 43:
        ifd = struct.unpack_from(order + "Q", data, 8)[0]
        return ifd + 8 + 20 * struct.unpack_from(order + "Q", data, ifd)[0]
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    return ifd + 2 + 12 * struct.unpack_from(order + "H", data, ifd)[0]


@pytest.mark.parametrize("name", sorted(name for name in ENTRIES if isinstance(expected(name), Size)))
def test_header_bytes_consumed_stay_small(name: str) -> None:
    """Sized images are answered within 64 KiB, except where the format puts the size later (SOF, IFD0)."""
    probe = ImageProbe()
    feed_all(probe, one_byte_chunks(DATA[name]))
    if ENTRIES[name]["format"] == "TIFF":  # IFD0 may sit at the end of the file; nothing beyond it is read
        assert probe.bytes_seen == tiff_ifd0_end(DATA[name])
    elif name in JPEGS:
        assert probe.bytes_seen <= max(64 * 1024, ENTRIES[name]["details"]["jpeg"]["sof"]["offset"] + 9)
    else:
        assert probe.bytes_seen <= 64 * 1024


# --- bodies that are not images -------------------------------------------------------------------

HTML = b"<!DOCTYPE html>\n<html><head><title>Page not found</title></head><body><h1>404</h1></body></html>\n"


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (HTML, None, "HTML page served at an image URL"),
        (HTML, "text/html; charset=utf-8", "HTML page served at an image URL (Content-Type text/html)"),
        (
            b"\xef\xbb\xbf\n  <html lang='en'><body>gone</body></html>",
            None,
            "HTML page served at an image URL",
        ),
        (b"<!-- cached --><div class='err'>gone</div>", None, "HTML page served at an image URL"),
        (b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>", None, "XML document <error>"),
        (b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>", "text/html", "HTML page"),
        (b'{"error": "not found", "status": 404}', "application/json", "JSON served at an image URL"),
        (b"Not Found", "text/plain", "text served at an image URL (Content-Type text/plain)"),
        (b"", "image/jpeg", "empty body served at an image URL"),
        (b" \r\n\t ", None, "blank body served at an image URL"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", None, "PDF document served at an image URL"),
    ],
)
def test_documents_at_an_image_url_are_not_images(body: bytes, content_type: str | None, detail: str) -> None:
    """HTML, XML, JSON, text, PDF and empty bodies are reported as not_image with a telling detail."""
    facts = probe_bytes(body, content_type=content_type)
    assert facts.error == "not_image"
    assert facts.size is None and facts.format is None
    assert facts.detail.startswith(detail)


def test_html_is_recognised_from_its_first_bytes() -> None:
    """An HTML error page is judged as soon as its doctype arrives, without reading the rest."""
    probe = ImageProbe()
    facts = feed_all(probe, one_byte_chunks(HTML + b"x" * 100_000))
    assert facts.error == "not_image"
    assert probe.bytes_seen <= 64


@pytest.mark.parametrize("seed", range(8))
def test_random_binary_bytes_are_unreadable(seed: int) -> None:
    """Random binary data without an image signature is unreadable, decided from its first bytes."""
    data = b"\x00\x07" + random.Random(seed).randbytes(20_000)
    probe = ImageProbe()
    facts = feed_all(probe, random_chunks(data, random.Random(seed)))
    assert facts.error == "unreadable" and facts.format is None
    assert probe.bytes_seen <= 65536 + 32


@pytest.mark.parametrize(
    ("body", "fmt"),
    [
        (b"\xff\xd8", "jpeg"),
        (b"\x89PNG\r\n", "png"),
        (b"GIF8", "gif"),
        (b"RIFF\x10\x00\x00\x00WE", "webp"),
        (b"II*\x00\x08\x00", "tiff"),
        (b"BM", "bmp"),
        (b"\x00\x00\x01\x00", "ico"),
        (b"\x00\x00\x02\x00\x01", "ico"),
    ],
)
def test_a_few_signature_bytes_are_an_unreadable_image_not_text(body: bytes, fmt: str) -> None:
    """A body that stops inside an image signature is a truncated image of that format."""
    facts = probe_bytes(body)
    assert facts.error == "unreadable" and facts.format == fmt


def test_gzip_body_is_unreadable_with_a_hint() -> None:
    """A gzip body (an undone Content-Encoding) is unreadable and the detail says why."""
    facts = probe_bytes(b"\x1f\x8b\x08\x00" + bytes(60))
    assert facts.error == "unreadable" and "gzip" in facts.detail


# --- streaming cost and the cap -------------------------------------------------------------------


def jpeg_header(width: int, height: int, app_segments: int = 0) -> bytes:
    """SOI, APP0, optional 64 KiB APP13 segments, DQT, SOF0, DHT and SOS of a synthetic baseline JPEG."""
    parts = [b"\xff\xd8", b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"]
    parts += [b"\xff\xed\xff\xff" + bytes(65533)] * app_segments
    parts += [b"\xff\xdb\x00\x43\x00" + bytes(range(64))]
    parts += [
        b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + bytes.fromhex("03012200021101031101")
    ]
    parts += [
        b"\xff\xc4\x00\x14\x00" + bytes(16) + b"\x00",
        b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00",
    ]
    return b"".join(parts)


def test_twenty_megabyte_jpeg_costs_only_its_header() -> None:
    """A 20 MB JPEG streamed in 64 KiB chunks is answered by the first chunk; later bytes are not kept."""
    header = jpeg_header(6000, 4000)
    body = header + bytes(20 * 1024 * 1024)
    probe = ImageProbe()
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    answers = [probe.feed(chunk) for chunk in chunks]
    assert answers[0] == ImageFacts("jpeg", Size(6000, 4000))
    assert all(answer == answers[0] for answer in answers)
    assert probe.bytes_seen == 65536


def test_twenty_megabyte_jpeg_one_byte_at_a_time_stops_at_the_sof() -> None:
    """Fed byte by byte, the synthetic JPEG is answered exactly when its SOF fields arrive."""
    header = jpeg_header(6000, 4000)
    sof = header.index(b"\xff\xc0")
    probe = ImageProbe()
    facts = feed_all(probe, one_byte_chunks(header + bytes(20 * 1024 * 1024)))
    assert facts.size == Size(6000, 4000)
    assert probe.bytes_seen == sof + 9


def test_jpeg_whose_sof_lies_beyond_the_cap_is_unreadable_without_reading_to_the_cap() -> None:
    """When a skipped segment already ends past the cap, the probe gives up at once."""
    data = jpeg_header(300, 200, app_segments=12)
    probe = ImageProbe(cap=200_000)
    facts = feed_all(probe, (data[i : i + 1000] for i in range(0, len(data), 1000)))
    assert facts.error == "unreadable" and facts.format == "jpeg"
    assert "no size within the first 200000 bytes" in facts.detail
    assert probe.bytes_seen < 200_000


@pytest.mark.parametrize(("cap", "ok"), [(266, False), (267, True), (100, False), (DEFAULT_CAP, True)])
def test_cap_bounds_what_the_probe_may_read(cap: int, ok: bool) -> None:
    """A cap below the SOF's end makes the JPEG unreadable; a cap reaching it gives the size."""
    data = DATA["exif-orientation-examples/Landscape_6.jpg"]  # SOF at 258, fields end at 267
    probe = ImageProbe(cap=cap)
    facts = feed_all(probe, one_byte_chunks(data))
    assert (facts.size == Size(1800, 1200)) is ok
    assert probe.bytes_seen <= cap
    if not ok:
        assert facts.error == "unreadable" and f"first {cap} bytes" in facts.detail


def test_one_big_chunk_is_cut_at_the_cap() -> None:
    """A chunk larger than the cap is kept only up to the cap, and the cap ends the probe."""
    probe = ImageProbe(cap=1000)
    facts = probe.feed(b"\xff\xd8\xff" + bytes(5000))
    assert facts is not None and facts.error == "unreadable"
    assert probe.bytes_seen == 1000


ADVERSARIAL: dict[str, Callable[[int], bytes]] = {
    "jpeg of tiny comment segments": lambda n: b"\xff\xd8" + b"\xff\xfe\x00\x02" * (n // 4),
    "jpeg of junk bytes": lambda n: b"\xff\xd8\xff" + bytes(n),
    "endless xml comment": lambda n: b"<!--" + b"a" * n,
    "endless svg tag": lambda n: b"<svg " + b'a="b" ' * (n // 6),
    "png of tiny chunks": lambda n: (
        bytes.fromhex("89504e470d0a1a0a0000000d4948445200000010000000100802000000909168 36")
        + b"\x00\x00\x00\x00tEXt\x00\x00\x00\x00" * (n // 12)
    ),
}


def python_steps(work: Callable[[], object]) -> int:
    """Python-level calls made by ``work``: a count, not a clock, so it is the same on any machine."""
    steps = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal steps
        steps += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return steps


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_one_byte_chunks_cost_linear_work(name: str) -> None:
    """Feeding an adversarial stream one byte at a time costs work in proportion to its length: doubling
    the input doubles the calls (re-parsing from scratch per byte would quadruple them). The cap still
    bounds a 560 KB stream."""
    build = ADVERSARIAL[name]
    data = build(560_000)
    probe = ImageProbe()
    assert_sane(feed_all(probe, one_byte_chunks(data)), probe, DEFAULT_CAP)
    small, large = build(20_000), build(40_000)
    cost = [python_steps(lambda d=d: feed_all(ImageProbe(), one_byte_chunks(d))) for d in (small, large)]
    assert cost[1] < 2.5 * cost[0], cost


# --- format details beyond the manifest -----------------------------------------------------------


def pillow_image(fmt: str, orientation: int, size: tuple[int, int] = (40, 20), **options: object) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes(), **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "AVIF"])
@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_orientation_matches_pillow_exif_transpose(fmt: str, orientation: int) -> None:
    """The displayed size equals Pillow's exif_transpose size (EXIF, eXIf, WebP EXIF, TIFF tag, AVIF irot)."""
    data = pillow_image(fmt, orientation)
    with Image.open(io.BytesIO(data)) as image:
        displayed = ImageOps.exif_transpose(image).size
    facts = feed_all(ImageProbe(), one_byte_chunks(data))
    assert facts.size == Size(*displayed)
    assert facts.format == fmt.lower()


def test_big_endian_exif_orientation_is_read() -> None:
    """An EXIF block in Motorola byte order is read like an Intel one."""
    tiff = b"MM\x00*\x00\x00\x00\x08\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00" + bytes(4)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    header = jpeg_header(640, 480)
    facts = probe_bytes(header[:2] + app1 + header[2:])
    assert facts.size == Size(480, 640)


@pytest.mark.parametrize("value", [0, 9, 255, 65535])
def test_invalid_exif_orientation_counts_as_normal(value: int) -> None:
    """Orientation values outside 1-8 leave the stored size unchanged."""
    tiff = (
        b"II*\x00\x08\x00\x00\x00\x01\x00"
        + b"\x12\x01\x03\x00\x01\x00\x00\x00"
        + struct.pack("<HH", value, 0)
    )
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff) + 4) + b"Exif\x00\x00" + tiff + bytes(4)
    header = jpeg_header(640, 480)
    assert probe_bytes(header[:2] + app1 + header[2:]).size == Size(640, 480)


@pytest.mark.parametrize("marker", [0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF])
def test_every_jpeg_frame_type_gives_the_size(marker: int) -> None:
    """All SOFn frame markers carry the size; DHT/JPG/DAC (C4/C8/CC) are skipped as ordinary segments."""
    header = jpeg_header(321, 123).replace(b"\xff\xc0", bytes([0xFF, marker]))
    dht_like = b"\xff\xc4\x00\x04\x00\x00\xff\xc8\x00\x02\xff\xcc\x00\x02"
    facts = probe_bytes(header[:2] + dht_like + header[2:])
    assert facts.size == Size(321, 123)


def test_jpeg_fill_bytes_and_junk_are_skipped() -> None:
    """0xFF fill bytes before a marker and junk between segments do not derail the marker walk."""
    header = jpeg_header(50, 60)
    sof = header.index(b"\xff\xc0")
    data = header[:sof] + b"\x00\x12junk\xff\x00" + b"\xff" * 7 + header[sof:]
    assert probe_bytes(data).size == Size(50, 60)


def test_jpeg_without_sof_before_the_scan_is_unreadable() -> None:
    """Scan data (SOS) or EOI before any frame header means the size is unknowable."""
    header = jpeg_header(50, 60)
    sof = header.index(b"\xff\xc0")
    assert "SOS" in probe_bytes(header[:sof] + b"\xff\xda\x00\x02").detail
    assert "EOI" in probe_bytes(header[:sof] + b"\xff\xd9").detail


def test_jpeg_zero_height_is_unreadable() -> None:
    """A SOF height of 0 (size deferred to a DNL marker) is not a usable size."""
    facts = probe_bytes(jpeg_header(50, 0))
    assert facts.error == "unreadable" and facts.format == "jpeg"


def bmff_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return bmff_box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def heif_file(
    brand: bytes = b"avif",
    primary: int | None = 1,
    mdat_first: bool = False,
    props: bytes | None = None,
    compatible: bytes = b"mif1",
) -> bytes:
    """ftyp + meta with a 64x64 thumbnail (item 2) and an 800x600 primary image rotated by irot (item 1)."""
    ftyp = bmff_box(b"ftyp", brand + b"\x00\x00\x00\x00" + brand + compatible)
    ipco = bmff_box(
        b"ipco",
        props
        if props is not None
        else full_box(b"ispe", struct.pack(">II", 64, 64))
        + full_box(b"ispe", struct.pack(">II", 800, 600))
        + bmff_box(b"irot", b"\x01"),
    )
    ipma = full_box(b"ipma", struct.pack(">I", 2) + b"\x00\x01\x02\x02\x03" + b"\x00\x02\x01\x01")
    meta_children = full_box(b"hdlr", bytes(4) + b"pict" + bytes(13))
    if primary is not None:
        meta_children += full_box(b"pitm", struct.pack(">H", primary))
    meta = full_box(b"meta", meta_children + bmff_box(b"iprp", ipco + ipma))
    mdat = bmff_box(b"mdat", bytes(5000))
    return ftyp + mdat + meta if mdat_first else ftyp + meta + mdat


def test_heif_primary_item_size_with_irot_rotation() -> None:
    """The primary item's ispe is used (not the larger-looking thumbnail order) and irot 90 swaps it."""
    assert probe_bytes(heif_file()) == ImageFacts("avif", Size(600, 800))


def test_heif_without_primary_item_falls_back_to_the_largest_ispe() -> None:
    """Without pitm the largest declared image size is reported, unrotated."""
    assert probe_bytes(heif_file(primary=None)).size == Size(800, 600)


def test_heif_meta_after_media_data_is_found() -> None:
    """A meta box placed after mdat is reached by skipping the media data."""
    facts = feed_all(ImageProbe(), one_byte_chunks(heif_file(brand=b"heic", mdat_first=True)))
    assert facts == ImageFacts("heif", Size(600, 800))


def test_heif_clap_crops_the_primary_size() -> None:
    """A clean-aperture box after ispe crops the reported size, as pillow-heif does."""
    clap = bmff_box(b"clap", struct.pack(">8I", 795, 1, 597, 1, 0, 1, 0, 1))
    props = (
        full_box(b"ispe", struct.pack(">II", 64, 64)) + full_box(b"ispe", struct.pack(">II", 800, 600)) + clap
    )
    assert probe_bytes(heif_file(props=props)).size == Size(795, 597)


def test_iso_media_that_is_not_an_image_is_unreadable() -> None:
    """An MP4 video (brand mp42) served at an image URL is unreadable, naming the brand."""
    facts = probe_bytes(heif_file(brand=b"mp42", compatible=b"isom"))
    assert facts.error == "unreadable" and "mp42" in facts.detail


def test_heif_meta_beyond_the_cap_is_unreadable() -> None:
    """When the media data pushes the meta box past the cap, the probe stops early and says so."""
    data = heif_file(mdat_first=True)
    facts = probe_bytes(data, cap=3000)
    assert facts.error == "unreadable" and "first 3000 bytes" in facts.detail


def test_tiff_ifd_beyond_the_cap_is_unreadable_after_the_header() -> None:
    """A TIFF whose IFD0 offset lies past the cap is given up as soon as the header is sniffed."""
    probe = ImageProbe(cap=4096)
    facts = feed_all(probe, one_byte_chunks(b"II*\x00" + struct.pack("<I", 10_000_000) + bytes(9000)))
    assert facts.error == "unreadable" and facts.format == "tiff"
    assert probe.bytes_seen == 32  # the sniffing window, not the 4096-byte cap


def test_tiff_short_and_long_dimension_tags_are_read() -> None:
    """ImageWidth as SHORT and ImageLength as LONG are both understood, in big-endian order."""
    entries = struct.pack(">HHIHH", 0x100, 3, 1, 70000 & 0xFFFF, 0) + struct.pack(">HHII", 0x101, 4, 1, 70000)
    data = b"MM\x00*" + struct.pack(">IH", 8, 2) + entries + bytes(4)
    assert probe_bytes(data).size == Size(70000 & 0xFFFF, 70000)


def test_ico_reports_the_largest_entry_and_cur_is_ico() -> None:
    """An icon with several sizes reports the largest; a CUR directory is read the same way."""
    out = io.BytesIO()
    Image.new("RGBA", (64, 64)).save(out, "ICO", sizes=[(16, 16), (48, 48), (32, 32)])
    data = out.getvalue()
    assert probe_bytes(data) == ImageFacts("ico", Size(48, 48))
    assert probe_bytes(data[:2] + b"\x02" + data[3:]) == ImageFacts("ico", Size(48, 48))


def test_bmp_core_header_and_top_down_info_header() -> None:
    """BITMAPCOREHEADER uses 16-bit sizes; a negative BITMAPINFOHEADER height means top-down."""
    core = b"BM" + bytes(12) + struct.pack("<IHH", 12, 300, 200) + bytes(8)
    info = b"BM" + bytes(12) + struct.pack("<Iii", 40, 300, -200) + bytes(20)
    assert probe_bytes(core).size == Size(300, 200)
    assert probe_bytes(info).size == Size(300, 200)


@pytest.mark.parametrize(
    ("chunk", "size"),
    [
        (
            b"VP8 "
            + struct.pack("<I", 10)
            + b"\x10\x02\x00\x9d\x01\x2a"
            + struct.pack("<HH", 0xC000 | 77, 88),
            (77, 88),
        ),
        (b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", 76 | (87 << 14)), (77, 88)),
        (
            b"VP8X"
            + struct.pack("<I", 10)
            + bytes(4)
            + (76).to_bytes(3, "little")
            + (87).to_bytes(3, "little"),
            (77, 88),
        ),
    ],
)
def test_webp_bitstream_headers(chunk: bytes, size: tuple[int, int]) -> None:
    """Lossy (scale bits masked), lossless and extended WebP headers give the canvas size."""
    data = b"RIFF" + struct.pack("<I", 4 + len(chunk) + 20) + b"WEBP" + chunk + bytes(20)
    assert probe_bytes(data) == ImageFacts("webp", Size(*size))


def test_png_with_bad_first_chunk_names_it() -> None:
    """A PNG whose first chunk is not IHDR is unreadable and the detail shows the chunk type."""
    facts = probe_bytes(DATA["image-size/invalid/sample.png"])
    assert facts.error == "unreadable" and "IHDO" in facts.detail


# --- SVG ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("svg", "size"),
    [
        (b'<svg width="100" height="50">', Size(100, 50)),
        (b"<svg width='100px' height='50.4px'/>", Size(100, 50)),
        (b'<svg width="1in" height="2.54cm">', Size(96, 96)),
        (b'<svg width="25.4mm" height="72pt">', Size(96, 96)),
        (b'<svg width="6pc" height="101.6Q">', Size(96, 96)),
        (b'<svg width="1e2" height=" 5E1 ">', Size(100, 50)),
        (b'<svg viewBox="0,0,30,40">', Size(30, 40)),
        (b'<svg width="60" viewBox="0 0 30 40">', Size(60, 80)),
        (b'<svg width="50%" height="80" viewBox="0 0 30 40">', Size(60, 80)),
        (b'<svg width="100%" height="100%" viewBox="0 0 30 40">', Size(30, 40)),
        (b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg" width="3" height="4">', Size(3, 4)),
        (
            b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- <svg width="1"> -->\n<svg width="7" height="8">',
            Size(7, 8),
        ),
        (b'<!DOCTYPE svg [<!ENTITY w "9"><!ATTLIST svg x CDATA ">">]><svg width="7" height="8">', Size(7, 8)),
        (b'<svg width="100%" height="50">', "unreadable"),
        (b'<svg width="2em" height="50" >', Size(32, 50)),
        (b'<svg width="4ex" height="1.5em">', Size(32, 24)),
        (b'<svg viewbox="0 0 30 40">', Size(30, 40)),
        (b'<svg width="60" viewbox="0 0 30 40">', Size(60, 80)),
        (b'<svg width="100%" viewbox="0 0 30 40">', Size(30, 40)),
        (b'<svg width="-5" height="50">', "unreadable"),
        (b'<svg width="0" height="0" viewBox="0 0 0 0">', "unreadable"),
        (b'<svg width="0.2" height="10">', "unreadable"),
        (b'<svg width="1e999" height="10">', "unreadable"),
        (b'<svg viewBox="0 0 10">', "unreadable"),
        (b'<svg xmlns="http://www.w3.org/2000/svg">', "unreadable"),
    ],
)
def test_svg_size_from_the_root_tag(svg: bytes, size: Size | str) -> None:
    """The root tag's absolute width/height (CSS px), else the viewBox, gives the SVG's size."""
    facts = probe_bytes(svg + b"<rect/></svg>")
    check(facts, size)
    assert facts.format == "svg"


def test_svg_entities_are_never_expanded() -> None:
    """An entity bomb in the DOCTYPE is skipped as text, quickly, and its references stay unexpanded."""
    lol = b"".join(
        b'<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;">' % (i, i - 1, i - 1, i - 1, i - 1) for i in range(1, 12)
    )
    data = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY l0 "9">' + lol + b']><svg width="&l11;" height="4">'
    tracemalloc.start()
    try:
        facts = probe_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # expanded, &l11; alone would be 4 MB of text
    assert facts.error == "unreadable" and facts.format == "svg"


def test_html_page_with_inline_svg_is_not_an_image() -> None:
    """An HTML page that merely contains an <svg> element is still an HTML page."""
    facts = probe_bytes(b'<html><body><svg width="10" height="10"></svg></body></html>')
    assert facts.error == "not_image"


def test_utf16_svg_is_read() -> None:
    """An SVG saved as UTF-16 with a byte-order mark is decoded before its tag is read."""
    data = '\ufeff<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20"></svg>'.encode("utf-16-le")
    assert probe_bytes(data) == ImageFacts("svg", Size(10, 20))


def test_svg_answer_comes_once_the_tag_closes() -> None:
    """A long SVG is answered from its opening tag without reading the drawing."""
    data = b'<svg width="10" height="20">' + b"<path d='M0 0'/>" * 50_000 + b"</svg>"
    probe = ImageProbe()
    facts = feed_all(probe, one_byte_chunks(data))
    assert facts.size == Size(10, 20)
    assert probe.bytes_seen <= 128


# --- robustness -----------------------------------------------------------------------------------


def test_bad_arguments_do_not_raise() -> None:
    """Odd caps, non-bytes chunks, wide memoryviews and non-string content types are tolerated."""
    for cap in (0, -5, True, "big"):
        probe = ImageProbe(cap=cap, content_type=42)  # type: ignore[arg-type]
        assert probe.feed("text") is None  # type: ignore[arg-type]
        assert probe.feed(None) is None  # type: ignore[arg-type]
        assert probe.finish().error == "not_image"
    probe = ImageProbe(cap=0)
    assert probe.feed(b"\x89PNG") is not None
    assert probe.bytes_seen == 1
    probe = ImageProbe(cap=10)
    assert probe.feed(memoryview(array.array("i", range(20)))) is not None  # type: ignore[arg-type]
    assert probe.bytes_seen == 10


def test_feeding_after_the_answer_changes_nothing() -> None:
    """Once answered, further chunks are neither kept nor counted and the answer stays."""
    probe = ImageProbe()
    facts = probe.feed(DATA["pngsuite/basn0g16.png"])
    seen = probe.bytes_seen
    assert probe.feed(b"x" * 1000) == facts == probe.finish()
    assert probe.bytes_seen == seen


SMALL_SAMPLES = sorted(DATA)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image's first 24 KiB with a few bytes flipped, inserted, deleted or overwritten."""
    data = bytearray(DATA[draw(st.sampled_from(SMALL_SAMPLES))][:24576])
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.one_of(st.integers(0, min(len(data), 700)), st.integers(0, len(data))))
        value = draw(st.integers(0, 255))
        op = draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        if op == "insert" or not data or where >= len(data):
            data[where:where] = bytes([value])
        elif op == "delete":
            del data[where]
        elif op == "flip":
            data[where] ^= 1 << (value % 8)
        else:
            data[where] = value
    return bytes(data)


def markup_soup() -> st.SearchStrategy[bytes]:
    tokens = [
        b"<svg", b"<html", b"<", b">", b"/>", b" ", b"width=", b"height=", b"viewBox=", b'"', b"'",
        b"10", b"1e3", b"cm", b"%", b"<!--", b"-->", b"<!DOCTYPE", b"[", b"]", b"<?xml", b"?>", b"\xef\xbb",
    ]  # fmt: skip
    return st.lists(st.sampled_from(tokens), max_size=40).map(b"".join)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=3000), markup_soup(), mutated_images()),
    cap=st.one_of(st.just(DEFAULT_CAP), st.integers(1, 5000)),
    sizes=st.lists(st.integers(1, 700), max_size=12),
)
def test_hostile_bytes_never_raise_and_respect_the_cap(data: bytes, cap: int, sizes: list[int]) -> None:
    """Random, mutated and markup-like bytes give a sane verdict within the cap, whatever the chunking."""
    probe = ImageProbe(cap=cap)
    facts = feed_all(probe, split(data, sizes))
    assert_sane(facts, probe, cap)
    assert facts == probe_bytes(data, cap=cap)


@FUZZ
@given(data=mutated_images(), sizes=st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_mutated_images_in_small_chunks_match_whole_feeding(data: bytes, sizes: list[int]) -> None:
    """Mutated real images give the same verdict in small chunks as in one piece."""
    probe = ImageProbe()
    facts = feed_all(probe, split(data, sizes))
    assert_sane(facts, probe, DEFAULT_CAP)
    assert facts == probe_bytes(data)
