"""Google AMP cache URL derivation (monitor/urls.py) against the spec and real articles."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.urls import (
    DEFAULT_AMP_CACHE_TEMPLATE,
    InvalidUrl,
    amp_cache_matches,
    amp_cache_subdomain,
    amp_cache_url,
    normalise_url,
    validate_amp_template,
)

ROOT = Path(__file__).resolve().parent.parent
KTLA = ROOT / "examples" / "articles" / "ktla-lapd-facial-recognition.md"
CORPUS = ROOT / "tests" / "data" / "articles"
PROPERTY = settings(max_examples=250, deadline=None)
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_FRONTMATTER = re.compile(r"\A---\r?\n(.*?)\r?\n---\r?\n", re.DOTALL)


def _hashed(host: str) -> str:
    return base64.b32encode(hashlib.sha256(host.encode()).digest()).decode().lower().rstrip("=")


def _amp_pairs(path: Path) -> Iterator[tuple[str, str, str]]:
    """(location, ampWebUrl, cdnAmpWebUrl) for every frontmatter mapping carrying both."""
    match = _FRONTMATTER.match(path.read_text(encoding="utf-8"))
    assert match is not None, path
    stack: list[tuple[str, object]] = [("", yaml.safe_load(match.group(1)))]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            amp, cdn = node.get("ampWebUrl"), node.get("cdnAmpWebUrl")
            if isinstance(amp, str) and isinstance(cdn, str):
                yield where or "<top>", amp, cdn
            stack.extend((f"{where}.{key}", value) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((f"{where}[{index}]", value) for index, value in enumerate(node))


@pytest.mark.parametrize(
    ("host", "subdomain"),
    [
        ("example.com", "example-com"),
        ("EXAMPLE.com", "example-com"),
        ("foo-example.com", "foo--example-com"),
        ("hello--world.com", "hello----world-com"),
        ("en-us.example.com", "0-en--us-example-com-0"),
        ("xn--57hw060o.com", "xn---com-p33b41770a"),
        ("\u26a1\U0001f60a.com", "xn---com-p33b41770a"),
        ("www.govtech.com", "www-govtech-com"),
        ("192.0.2.1", "192-0-2-1"),
    ],
)
def test_amp_cache_subdomain_readable(host: str, subdomain: str) -> None:
    """Eligible hosts get the human-readable cache label of the spec's examples."""
    assert amp_cache_subdomain(host) == subdomain


def test_amp_cache_subdomain_long_result_falls_back_to_hash() -> None:
    """A host whose readable label would be 70 characters gets the 52-character Base32 SHA-256 instead."""
    host = "a-b-c-d-e-f-g.some-rather-long-news-sites-names.example.com"
    assert len(host) <= 63
    assert len(host) + host.count("-") == 70
    subdomain = amp_cache_subdomain(host)
    assert subdomain == _hashed(host)
    assert len(subdomain) == 52
    assert amp_cache_subdomain(host) == subdomain  # deterministic


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # no dot
        "a" * 60 + ".example.com",  # host itself longer than 63 characters
        "ab--cd.example.com",  # '--' at positions 3-4 of the host, not an IDNA label
        "xn--mgbh0fb.example",  # Arabic (RTL) mixed with Latin (LTR)
        "my_site.example.com",  # '_' cannot be in a DNS label
        "xn--zz.example.com",  # undecodable punycode
        "-lead.example.com",  # label would start with '-'
        "--.example.com",  # still '--' at positions 3-4 after the 0-...-0 wrap
        "en-" + "x" * 54 + ".com",  # 62 characters readable, 66 once wrapped in 0-...-0
    ],
)
def test_amp_cache_subdomain_ineligible_hosts_are_hashed(host: str) -> None:
    """Hosts the readable form cannot carry use the hashed fallback of the ASCII host."""
    assert amp_cache_subdomain(host) == _hashed(host.lower())


def test_amp_cache_subdomain_single_direction_idn_stays_readable() -> None:
    """An all-RTL IDN host is re-encoded as one punycode label rather than hashed."""
    subdomain = amp_cache_subdomain("xn--mgbh0fb.xn--kgbechtv")  # مثال.إختبار
    assert subdomain.startswith("xn--")
    assert (
        subdomain[4:].encode("ascii").decode("punycode")
    ) == "\u0645\u062b\u0627\u0644-\u0625\u062e\u062a\u0628\u0627\u0631"


def test_amp_cache_url_shapes() -> None:
    """The cache URL has 's/' for https origins only, the origin host:port, path and query; no fragment."""
    assert (
        amp_cache_url("https://example.com/a/amp/")
        == "https://example-com.cdn.ampproject.org/c/s/example.com/a/amp/"
    )
    assert (
        amp_cache_url("http://example.com/a?amp=1#x")
        == "https://example-com.cdn.ampproject.org/c/example.com/a?amp=1"
    )
    assert amp_cache_url("https://example.com:8443/a") == (
        "https://example-com.cdn.ampproject.org/c/s/example.com:8443/a"
    )
    assert amp_cache_url("HTTPS://Example.COM") == "https://example-com.cdn.ampproject.org/c/s/example.com/"
    assert amp_cache_url("https://example.com/?") == "https://example-com.cdn.ampproject.org/c/s/example.com/"


def test_amp_cache_url_custom_template() -> None:
    """Another cache provider is one template away."""
    template = "https://{subdomain}.amp.cloudflare.com/c/{s}{host}{path}"
    assert validate_amp_template(template) is None
    assert amp_cache_url("https://foo-example.com/x", template) == (
        "https://foo--example-com.amp.cloudflare.com/c/s/foo-example.com/x"
    )


def test_amp_cache_url_invalid_inputs() -> None:
    """An unusable AMP URL or template yields an InvalidUrl naming why."""
    assert amp_cache_url("ftp://example.com/x") == InvalidUrl("unsupported scheme 'ftp'")
    bad = amp_cache_url("https://example.com/x", "https://{subdomain}.x/{nope}{path}")
    assert isinstance(bad, InvalidUrl)
    assert bad.reason.startswith("invalid AMP cache template: unknown placeholder {nope}")


@pytest.mark.parametrize(
    ("template", "error"),
    [
        (DEFAULT_AMP_CACHE_TEMPLATE, None),
        ("https://{subdomain}.cache.example/{path}", None),
        ("https://{subdomain}.x/{path}{extra}", "unknown placeholder {extra}"),
        ("https://{subdomain}.x/{}{path}", "unknown placeholder {}"),
        ("https://{subdomain}.x/{path.upper}", "unknown placeholder {path.upper}"),
        ("https://cache.example/{host}{path}", None),  # a single-origin cache
        ("https://cache.example/c/s/{host}{path}", None),
        ("https://{subdomain}.cache.example/{host}", "template lacks {path}"),
        ("https://cache.example/", "template lacks {path}"),
        ("https://{subdomain}.x/{path!r}", "placeholder {path} must not carry"),
        ("https://{subdomain}.x/{path:>9}", "placeholder {path} must not carry"),
        ("https://{subdomain.x/{path}", "malformed template"),
        ("{subdomain}{path}", "template does not produce a valid URL: no scheme"),
        ("ftp://{subdomain}.x/{path}", "template does not produce a valid URL: unsupported scheme 'ftp'"),
    ],
)
def test_validate_amp_template(template: str, error: str | None) -> None:
    """Templates with unknown or missing placeholders, or that cannot form a URL, are reported."""
    result = validate_amp_template(template)
    if error is None:
        assert result is None
    else:
        assert result is not None
        assert result.startswith(error)


def test_amp_cache_matches_detects_mismatches() -> None:
    """A different subdomain, origin scheme or path is a mismatch; spelling differences are not."""
    amp = "https://foo-example.com/a/amp?x=1"
    good = "https://foo--example-com.cdn.ampproject.org/c/s/foo-example.com/a/amp?x=1"
    assert amp_cache_matches(amp, good) == (True, good)
    assert amp_cache_matches(
        amp, "HTTPS://FOO--example-com.cdn.ampproject.org:443/c/s/foo-example.com/a/amp?x=1#t"
    )[0]
    assert amp_cache_matches(amp, good.replace("foo--example", "foo-example")) == (False, good)
    assert amp_cache_matches(amp, good.replace("/c/s/", "/c/")) == (False, good)
    assert amp_cache_matches(amp, good.replace("/a/amp", "/a/amp/")) == (False, good)
    assert amp_cache_matches(amp, "not a url") == (False, good)
    assert amp_cache_matches("not a url", good) == (False, None)


def test_ktla_example_article_is_consistent() -> None:
    """All four AMP pairs of the KTLA example article derive to their declared cache URLs."""
    pairs = list(_amp_pairs(KTLA))
    assert len(pairs) == 4
    for where, amp, cdn in pairs:
        matches, expected = amp_cache_matches(amp, cdn)
        assert matches, (where, cdn, expected)
    govtech = "https://www.govtech.com/public-safety/LAPD-Commission-OKs-Detectives-to-Use-Facial-Recognition.html?AMP"
    assert amp_cache_url(govtech) == (
        "https://www-govtech-com.cdn.ampproject.org/c/s/www.govtech.com/public-safety/"
        "LAPD-Commission-OKs-Detectives-to-Use-Facial-Recognition.html?AMP"
    )


def test_real_corpus_amp_pairs_are_consistent() -> None:
    """Every ampWebUrl/cdnAmpWebUrl pair in the 300 real articles derives correctly."""
    files = sorted(CORPUS.glob("*.md"))
    assert len(files) == 300
    pairs = [(path.name, *pair) for path in files for pair in _amp_pairs(path)]
    assert len(pairs) > 400
    mismatches = [pair for pair in pairs if not amp_cache_matches(pair[2], pair[3])[0]]
    assert mismatches == []


# --- properties ------------------------------------------------------------------------

_ASCII_LABEL = st.from_regex(r"[a-z0-9_\-]{1,20}", fullmatch=True)
_UNICODE_LABEL = st.text(st.characters(categories=["Ll", "Lu", "Lo", "Nd"]), min_size=1, max_size=10)
_HOSTNAMES = st.lists(st.one_of(_ASCII_LABEL, _UNICODE_LABEL), min_size=1, max_size=5).map(".".join)


@PROPERTY
@given(st.one_of(_HOSTNAMES, st.text()))
def test_amp_cache_subdomain_is_a_dns_label(host: str) -> None:
    """For any host the subdomain is one valid DNS label, with '--' at 3-4 only in the xn-- form."""
    subdomain = amp_cache_subdomain(host)
    assert DNS_LABEL.fullmatch(subdomain), subdomain
    assert subdomain[2:4] != "--" or subdomain.startswith("xn--")


@PROPERTY
@given(st.lists(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True), min_size=2, max_size=4).map(".".join))
def test_amp_cache_subdomain_readable_form_for_plain_hosts(host: str) -> None:
    """Plain dotted hosts up to 63 characters map to their dashed form; longer ones to the hash."""
    expected = host.replace(".", "-") if len(host) <= 63 else _hashed(host)
    assert amp_cache_subdomain(host) == expected


@PROPERTY
@given(st.one_of(st.text(), _HOSTNAMES.map(lambda host: f"https://{host}/p?q#f")))
def test_amp_cache_url_never_raises(amp_url: str) -> None:
    """Any text yields an InvalidUrl or a normalised https cache URL that matches itself."""
    result = amp_cache_url(amp_url)
    if isinstance(result, InvalidUrl):
        assert result.reason
        return
    assert result.startswith("https://")
    assert normalise_url(result) == result
    assert amp_cache_matches(amp_url, result) == (True, result)
