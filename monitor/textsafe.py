"""Make untrusted text inert for terminals and spreadsheets.

Titles and URLs come from other people's files: control characters could drive a
terminal, and a leading ``=``/``+``/``-``/``@`` makes spreadsheet software run a formula.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """Replace control characters (ANSI escapes, bidi overrides) with visible escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def csv_cell(value: object) -> object:
    """A CSV cell that spreadsheets show as text, never evaluate."""
    if not isinstance(value, str):
        return value
    value = inert(value)
    return "'" + value if value.startswith(_FORMULA_START) else value
