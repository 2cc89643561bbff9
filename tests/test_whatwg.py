"""Conformance: the URL normaliser against the WHATWG URL test data browsers are tested against.

``tests/data/whatwg/urltestdata.json`` is web-platform-tests' ``url/resources/urltestdata.json``
(BSD-3-Clause, see the README and LICENSE beside it). Each case gives an input, a base and
either the browser's parse (``href`` and its parts) or ``failure``.

Considered: the cases an article could hold, i.e. absolute http(s) URLs written with ``//``
(or ``\\\\``, which browsers read alike): http or https scheme, then two slashes. Their base does not
matter (the standard ignores it once the input has a scheme and an authority), so they run
through ``normalise_url`` exactly as a frontmatter ``webUrl`` does. Expected failures must come
out ``InvalidUrl``; expected successes must come out as the browser's ``href`` after our
documented normalisations (fragment dropped, one trailing dot of the host dropped).

Not considered: other schemes, relative references (they need a base, which an article field
lacks) and the scheme-without-slashes forms (``http:example.com``), which we reject on purpose:
``test_scheme_without_slashes_is_rejected`` holds them to that.

The deliberate deviations are listed in ``DEVIATIONS`` (and the README's "URL normalisation"):
each is expected to deviate (strict xfail), so a fixed one fails the run until it is removed
from the list, and any other disagreement fails as a regression.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ada_url import normalize_url

from monitor.urls import InvalidUrl, normalise_url, whatwg_href

DATA = Path(__file__).resolve().parent / "data" / "whatwg" / "urltestdata.json"
CASES: list[dict[str, Any]] = [case for case in json.loads(DATA.read_text("utf-8")) if isinstance(case, dict)]

_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

_PUNYCODE = (
    "invalid punycode: the standard (since 2025) takes a pure-ASCII host as written, but no "
    "registry issues such a label, so checking it would cost a DNS lookup for an 'unreachable'; "
    "we say invalid_url"
)
DEVIATIONS: dict[str, str] = {
    "http://a.b.c.xn--pokxncvks": _PUNYCODE,
    "http://10.0.0.xn--pokxncvks": _PUNYCODE,
    "http://a.b.c.XN--pokxncvks": _PUNYCODE,
    "http://a.b.c.Xn--pokxncvks": _PUNYCODE,
    "http://10.0.0.XN--pokxncvks": _PUNYCODE,
    "http://10.0.0.xN--pokxncvks": _PUNYCODE,
    "https://xn--/": _PUNYCODE,
}


def _as_written(case: dict[str, Any]) -> tuple[str, str] | None:
    """(scheme, text after "scheme:") of the input as the parser sees it, for http(s) inputs."""
    text = case["input"].strip(_C0_AND_SPACE)
    for char in "\t\n\r":
        text = text.replace(char, "")
    match = _SCHEME.match(text)
    if match is None or match.group(1).lower() not in ("http", "https"):
        return None
    return match.group(1).lower(), text[match.end() :]


def _with_slashes(case: dict[str, Any]) -> bool:
    written = _as_written(case)
    return written is not None and written[1][:2] in ("//", "\\\\", "/\\", "\\/")


CONSIDERED = [case for case in CASES if _with_slashes(case)]
WITHOUT_SLASHES = [
    case
    for case in CASES
    if _as_written(case) is not None
    and not _with_slashes(case)
    # same scheme as the base: relative to it ("http:foo" on an http page), so not absolute at all
    and (case.get("base") is None or not case["base"].startswith(_as_written(case)[0] + ":"))  # type: ignore[index]
]


def _expected(case: dict[str, Any]) -> str | None:
    """The browser's href after our normalisations, rebuilt from its parts; None for a failure."""
    if case.get("failure"):
        return None
    hostname = case["hostname"]
    if len(hostname) > 1 and hostname.endswith(".") and hostname[-2] != ".":
        hostname = hostname[:-1]  # our one trailing dot (hosts like "." or "a.." keep theirs)
    userinfo = case["username"] + (":" + case["password"] if case["password"] else "")
    return "".join(
        (
            case["protocol"],
            "//",
            userinfo + "@" if userinfo else "",
            hostname,
            ":" + case["port"] if case["port"] else "",
            case["pathname"],
            case["search"] or ("?" if case["href"].partition("#")[0].endswith("?") else ""),
        )
    )


def _agrees(case: dict[str, Any]) -> bool:
    got = normalise_url(case["input"])
    expected = _expected(case)
    return isinstance(got, InvalidUrl) if expected is None else got == expected


def _param(case: dict[str, Any]) -> Any:
    reason = DEVIATIONS.get(case["input"])
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=ascii(case["input"])[1:-1][:60], marks=marks)


def test_vendored_data_is_whole() -> None:
    """The vendored file parses and holds the full set (891 cases at the vendored commit)."""
    assert len(CASES) == 891
    assert len(CONSIDERED) == 359 and len(WITHOUT_SLASHES) == 24
    assert all("input" in case and ("failure" in case or "href" in case) for case in CASES)


def test_expected_rebuilds_the_browser_href() -> None:
    """The rebuilt href equals the browser's own (minus the fragment) wherever no rule of ours applies."""
    for case in CONSIDERED:
        if not case.get("failure") and not case["hostname"].endswith("."):
            assert _expected(case) == case["href"].partition("#")[0], case["input"]


@pytest.mark.parametrize("case", [_param(case) for case in CONSIDERED])
def test_absolute_http_url_as_a_browser_reads_it(case: dict[str, Any]) -> None:
    """Rejected exactly when the browser rejects it; otherwise the browser's spelling."""
    got = normalise_url(case["input"])
    expected = _expected(case)
    if expected is None:
        assert isinstance(got, InvalidUrl), f"{case['input']!r}: a browser rejects it, we made {got!r}"
    else:
        assert got == expected, f"{case['input']!r}: a browser reads {expected!r}"


def test_agreement_and_the_deviation_list() -> None:
    """At least 98% agree, and the disagreements are exactly the listed deviations."""
    disagreeing = {case["input"] for case in CONSIDERED if not _agrees(case)}
    assert disagreeing == set(DEVIATIONS)
    agreeing = len(CONSIDERED) - len(disagreeing)
    assert agreeing / len(CONSIDERED) >= 0.98, f"{agreeing}/{len(CONSIDERED)}"


@pytest.mark.parametrize("case", [pytest.param(c, id=ascii(c["input"])[1:-1]) for c in WITHOUT_SLASHES])
def test_scheme_without_slashes_is_rejected(case: dict[str, Any]) -> None:
    """``http:example.com`` and ``http:/x`` mean a path relative to the page they are on; an article
    field is on no page, so they are invalid, with the reason saying what is missing."""
    got = normalise_url(case["input"])
    assert isinstance(got, InvalidUrl) and got.reason.startswith("missing '//' after 'http")


def test_the_fast_parser_call_matches_the_binding() -> None:
    """``whatwg_href`` (ada's C API directly) gives what the binding's public call gives."""
    for case in CASES:
        text = case["input"]
        try:
            public: str | None = normalize_url(text)
        except ValueError:
            public = None
        try:
            ours: str | None = whatwg_href(text)
        except ValueError:
            ours = None
        assert ours == public, text
