"""What every format parser shares: the resumable ``Parser`` contract and the facts it returns.

Each format module (``jpeg``, ``raster``, ``webp``, ``isobmff``, ``tiff``, ``text``, ``fixed``) subclasses
``Parser``; ``sniff`` picks one from the first bytes. Results are built here only, so every
parser reports sizes, impossible sizes and unreadable headers in the same words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from monitor.types import ImageFacts, Size

__all__ = ["MAX_DIMENSION", "Parser", "bad", "not_image", "show", "sized", "uint"]

MAX_DIMENSION = 2**31 - 1


def uint(buf: bytes | bytearray, offset: int, length: int, big: bool) -> int:
    """Unsigned integer at ``offset``; callers check that ``length`` bytes are there."""
    return int.from_bytes(buf[offset : offset + length], "big" if big else "little")


def show(raw: bytes) -> str:
    """Four-character codes from hostile files, printable and escaped."""
    return repr(raw)[2:-1]


def sized(fmt: str, width: int, height: int, orientation: int = 1, detail: str = "") -> ImageFacts:
    """Success facts, with EXIF orientations 5-8 swapping the axes; an empty size is unreadable."""
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        return bad(fmt, f"{fmt.upper()} header gives an impossible size {width}x{height}")
    if orientation in (5, 6, 7, 8):
        return ImageFacts(
            fmt, Size(height, width), None, f"stored {width}x{height}, orientation {orientation}"
        )
    return ImageFacts(fmt, Size(width, height), None, detail)


def bad(fmt: str | None, detail: str) -> ImageFacts:
    return ImageFacts(fmt, None, "unreadable", detail)


def not_image(what: str, content_type: str | None) -> ImageFacts:
    """A soft 404: the server answered with a document where an image should be."""
    suffix = f" (Content-Type {content_type})" if content_type else ""
    return ImageFacts(None, None, "not_image", f"{what} served at an image URL{suffix}")


class Parser(ABC):
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
            return bad(self.fmt, f"no size within the first {cap} bytes of {self.label} ({self.stage})")
        return bad(self.fmt, f"truncated {self.label}: stream ended after {len(buf)} bytes, {self.stage}")
