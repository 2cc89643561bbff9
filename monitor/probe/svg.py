"""SVG size from the text of its root ``<svg>`` tag: absolute width/height (px, in, cm, mm, Q, pt, pc;
em and ex at the default 16px font), else the viewBox (``viewBox`` or ``viewbox``); ``%`` is relative
and so taken from the viewBox.

Read with regular expressions over the opening tag only, never an XML parser that could
expand entities.
"""

from __future__ import annotations

import math
import re

from monitor.probe.parser import MAX_DIMENSION, bad, sized
from monitor.types import ImageFacts

__all__ = ["svg_size"]

_SVG_UNITS = {"": 1.0, "px": 1.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6}
_SVG_UNITS |= {"pt": 4 / 3, "pc": 16.0, "em": 16.0, "ex": 8.0}  # em/ex at the browser default 16px font
_TAG_REST = re.compile(rb"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_ATTR = re.compile(rb"([^\s=/>\"']+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_SVG_LENGTH = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z%]*)\s*")
_VIEWBOX_SEP = re.compile(r"[\s,]+")


def svg_size(data: bytes | bytearray, start: int, ending: str | None) -> ImageFacts | None:
    """Size from the root <svg> tag: width/height in absolute units, else via the viewBox."""
    tag = _TAG_REST.match(data, start)
    if tag is None:
        return None if ending is None else bad("svg", f"the <svg> tag does not close {ending}")
    attrs: dict[str, str] = {}
    for name, double, single in _ATTR.findall(data, start, tag.end()):
        attrs.setdefault(name.decode("utf-8", "replace"), (double or single).decode("utf-8", "replace"))
    width, height = _svg_length(attrs.get("width")), _svg_length(attrs.get("height"))
    box = _viewbox(attrs.get("viewBox", attrs.get("viewbox")))  # lowercase is common in the wild
    if width is not None and height is not None:
        size = (width, height)
    elif box is not None and width is not None:
        size = (width, width * box[1] / box[0])
    elif box is not None and height is not None:
        size = (height * box[0] / box[1], height)
    elif box is not None:  # width/height missing or relative: the viewBox is the only size there is
        size = box
    else:
        return bad("svg", "SVG has no absolute size (width/height missing or relative, no viewBox)")
    pixels = [math.floor(value + 0.5) for value in size]
    return sized("svg", pixels[0], pixels[1])


def _svg_length(value: str | None) -> float | None:
    """CSS px for a length (unitless = px, em = 16px); None for %, junk or <= 0."""
    if value is None:
        return None
    match = _SVG_LENGTH.fullmatch(value)
    if match is None:
        return None
    factor = _SVG_UNITS.get(match.group(2).lower())
    number = float(match.group(1))
    if factor is None or not math.isfinite(number) or number <= 0:
        return None
    pixels = number * factor
    return pixels if pixels < MAX_DIMENSION else None


def _viewbox(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = [part for part in _VIEWBOX_SEP.split(value.strip()) if part]
    if len(parts) != 4:
        return None
    try:
        width, height = float(parts[2]), float(parts[3])
    except ValueError:
        return None
    if not (0 < width < MAX_DIMENSION and 0 < height < MAX_DIMENSION):
        return None
    return width, height
