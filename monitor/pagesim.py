"""Page likeness, pure: a page body's fingerprint, fingerprint similarity, and title similarity.

The soft-404 probe (``fetch.soft404``) fingerprints what a made-up URL of a host answers, and
every page of that host read with GET is fingerprinted the same way; ``verdict`` compares them.

Fingerprint: the visible text (``<script>``/``<style>`` and tags dropped, entities decoded),
lower-cased words without digits (dates, counters and request ids differ on every error page),
as overlapping 3-word shingles; each shingle is hashed (BLAKE2b, 64-bit, stable across processes,
unlike ``hash``) and the ``SKETCH`` smallest hashes are kept (a bottom-k MinHash). Two sketches
estimate the Jaccard similarity of the two shingle sets: an error template that only echoes
another slug stays above 0.9, while two articles on one site template share only boilerplate
(figures: ``bench/soft404_similarity.py``). A page with fewer shingles than ``SKETCH`` keeps all
of them, so the estimate is exact there.

Titles: lower-cased word tokens (digits kept: "Diablo 4" is not "Diablo 3"), compared whole and
with a site name cut off their end (" | Site", " - Site", " — Site") or start ("Site - "); the
similarity is the best Jaccard index of those variants.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import re
from collections.abc import Iterable

__all__ = ["SKETCH", "fingerprint", "similarity", "title_similarity", "title_tokens", "visible_text"]

SKETCH = 128
VERSION = "m1"  # the sketch format, so a stored fingerprint of another format is never compared
SHINGLE = 3
_HIDDEN = re.compile(r"<(script|style|noscript|template)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[^\W\d_]+")  # letters only: digits and punctuation never make a token
_TITLE_WORD = re.compile(r"[^\W_]+")
_SUFFIX = re.compile(r"\s+(?:\||-|–|—|::|·|•)\s+[^|\-–—:·•]{1,60}$")
_PREFIX = re.compile(r"^[^|\-–—:·•]{1,60}\s+(?:\||-|–|—|::|·|•)\s+")


def visible_text(body: bytes) -> str:
    """The text a reader sees, roughly: hidden elements, comments and tags dropped."""
    text = body.decode("utf-8", "replace")
    text = _COMMENT.sub(" ", _HIDDEN.sub(" ", text))
    return html.unescape(_TAG.sub(" ", text))


def fingerprint(body: bytes, echoes: Iterable[str] = ()) -> str | None:
    """The body's sketch as text (``m1:`` and hex hashes, ascending), or None when it has no words.

    ``echoes`` (the page's URL and path) are cut from the text first: a "not found" page that
    repeats the path it was asked for is then the same whatever the path.
    """
    text = visible_text(body).lower()
    for echo in sorted({e.lower() for e in echoes if len(e) > 1}, key=len, reverse=True):
        text = text.replace(echo, " ")
    words = _WORD.findall(text)
    if not words:
        return None
    if len(words) < SHINGLE:
        shingles = {" ".join(words)}
    else:
        shingles = {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}
    hashes = (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") for s in shingles)
    return VERSION + ":" + ",".join(f"{h:x}" for h in heapq.nsmallest(SKETCH, hashes))


def _sketch(text: str) -> list[int] | None:
    version, _, rest = text.partition(":")
    if version != VERSION or not rest:
        return None
    try:
        return [int(part, 16) for part in rest.split(",")]
    except ValueError:
        return None


def similarity(a: str | None, b: str | None) -> float | None:
    """Estimated Jaccard similarity (0..1) of the pages two fingerprints came from; None if unknown."""
    if a is None or b is None:
        return None
    left, right = _sketch(a), _sketch(b)
    if left is None or right is None:
        return None
    mine, theirs = set(left), set(right)
    union = heapq.nsmallest(min(SKETCH, len(mine | theirs)), mine | theirs)
    both = sum(1 for h in union if h in mine and h in theirs)
    return both / len(union)


def title_tokens(title: str) -> list[set[str]]:
    """A title's word sets, lower-cased: whole, and without a site name cut at its end (" | Site
    Name") or at its start ("Site - "), whichever of these exist."""
    text = html.unescape(title).strip()
    found: list[set[str]] = []
    for variant in (text, _SUFFIX.sub("", text), _PREFIX.sub("", text)):
        words = set(_TITLE_WORD.findall(variant.lower()))
        if words and words not in found:
            found.append(words)
    return found


def title_similarity(a: str, b: str) -> float | None:
    """How alike two titles are (0..1), None when either has no word: the best Jaccard index over
    their ``title_tokens`` variants; one title's words (two or more) all inside the other's is 1."""
    best: float | None = None
    for left in title_tokens(a):
        for right in title_tokens(b):
            small = min(len(left), len(right))
            score = (
                1.0
                if small >= 2 and (left <= right or right <= left)
                else len(left & right) / len(left | right)
            )
            best = score if best is None else max(best, score)
    return best
