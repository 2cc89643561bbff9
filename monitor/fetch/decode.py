"""Bounded Content-Encoding decoding, so a compression bomb stops at the reader's cap."""

from __future__ import annotations

import zlib

import brotli

__all__ = ["Decoder"]


class Decoder:
    """Content-Encoding decoding that never produces more than asked for (bomb-proof).

    Single gzip/deflate/br codings are decoded; stacked or unknown codings pass through as they
    are (the probe then reports what it sees), as httpx does for unknown ones.
    """

    __slots__ = ("_brotli", "_mode", "_started", "_zlib")

    def __init__(self, encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        mode = codings[0] if len(codings) == 1 else "identity"
        self._zlib: zlib._Decompress | None = None
        self._brotli: brotli.Decompressor | None = None
        self._started = False
        if mode in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif mode == "deflate":
            self._zlib = zlib.decompressobj()
        elif mode == "br":
            self._brotli = brotli.Decompressor()
        else:
            mode = "identity"
        self._mode = mode

    def decode(self, data: bytes, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes from ``data`` (the caller stops once it has its cap)."""
        if limit <= 0 or not data:
            return b""
        if self._brotli is not None:
            out: bytes = self._brotli.process(data, output_buffer_limit=limit)
            return out[:limit]
        if self._zlib is None:
            return data[:limit]
        if self._mode == "deflate" and not self._started:
            self._started = True
            try:
                return self._zlib.decompress(data, limit)
            except zlib.error:  # "deflate" is often sent without its zlib wrapper
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._zlib.decompress(data, limit)
