"""Links stage: every URL rule, every wrong-type case, and robustness against arbitrary metadata."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.corpus.discover import CorpusFile
from monitor.corpus.read import read_article
from monitor.links import extract as links
from monitor.links.extract import extract
from monitor.types import Article, Finding, FindingKind, Occurrence, Role, Size
from monitor.urls import amp_cache_url

EXAMPLE = Path(__file__).parent.parent / "examples" / "articles" / "ktla-lapd-facial-recognition.md"
FEATURED = (
    Path(__file__).parent
    / "data"
    / "articles-original"
    / "2019-08-19-microsoft-power-apps-2019-release-wave-2-overview.md"
)


def _real(path: Path) -> Article:
    info = path.stat()
    article = read_article(CorpusFile(path.name, path, info.st_size, info.st_mtime_ns), max_bytes=1 << 21)
    assert isinstance(article, Article)
    return article


def _article(meta: dict[str, object] | None = None, body: str = "") -> Article:
    return Article("a.md", None, meta or {}, body, 0, 0, "")


def _run(
    meta: dict[str, object] | None = None, body: str = "", **kwargs: Any
) -> tuple[list[Occurrence], list[Finding]]:
    return extract(_article(meta, body), **kwargs)


def _where(occurrences: list[Occurrence]) -> list[tuple[str, Role, str | None]]:
    return [(o.location, o.role, o.url) for o in occurrences]


def _kinds(findings: list[Finding]) -> list[tuple[str, FindingKind]]:
    return [(f.location, f.kind) for f in findings]


# --- the real example --------------------------------------------------------------------


def test_example_article_locations_roles_and_sizes() -> None:
    """The example yields its 17 URLs at exact locations with roles, related flags and declared sizes."""
    occurrences, findings = extract(_real(EXAMPLE))
    got = [(o.location, o.role, o.related, o.declared) for o in occurrences]
    related: list[tuple[str, Role, bool, Size | None]] = [
        (f"related[{j}].{name}", role, True, None)
        for j in range(3)
        for name, role in (("webUrl", Role.WEB), ("ampWebUrl", Role.AMP), ("cdnAmpWebUrl", Role.CDN_AMP))
    ]
    sizes = [Size(939, 630), Size(1280, 720), Size(1200, 495)]
    for j in range(3):
        related.insert(4 * j + 3, (f"related[{j}].images[0].url", Role.IMAGE, True, sizes[j]))
    assert got == [
        ("originalUrl", Role.ORIGINAL, False, None),
        ("webUrl", Role.WEB, False, None),
        ("ampWebUrl", Role.AMP, False, None),
        ("cdnAmpWebUrl", Role.CDN_AMP, False, None),
        ("images[0].url", Role.IMAGE, False, Size(840, 473)),
        *related,
    ]
    assert findings == []
    assert all(o.article == "ktla-lapd-facial-recognition.md" for o in occurrences)
    assert all(o.url == o.raw_url for o in occurrences)  # the example is already in normal form


def test_example_article_skips_markdown_parse_for_empty_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blank body (the real corpus) or one without '[' or '<' is never handed to markdown-it."""

    class Refuse:
        def parse(self, text: str) -> list[object]:
            raise AssertionError("markdown parsed")

    monkeypatch.setattr(links, "MARKDOWN", Refuse())
    assert len(extract(_real(EXAMPLE))[0]) == 17
    assert _run(body="Plain prose, no links at all.\n") == ([], [])


def test_other_amp_template_turns_every_pair_into_a_mismatch() -> None:
    """The template is honoured: a different cache host makes all four AMP pairs mismatch."""
    template = "https://{subdomain}.amp.example.net/c/{s}{host}{path}"
    _, findings = extract(_real(EXAMPLE), amp_template=template)
    assert _kinds(findings) == [("cdnAmpWebUrl", FindingKind.AMP_CACHE_MISMATCH)] + [
        (f"related[{j}].cdnAmpWebUrl", FindingKind.AMP_CACHE_MISMATCH) for j in range(3)
    ]
    assert findings[0].expected is not None and ".amp.example.net/c/s/ktla.com/" in findings[0].expected


def test_featured_content_iframe_in_real_article() -> None:
    """A real article's featuredContent YouTube iframe is an EMBED at `featuredContent<iframe>[0].src`."""
    occurrences, findings = extract(_real(FEATURED))
    embeds = [(o.location, o.role, o.url) for o in occurrences if o.role is Role.EMBED]
    assert embeds == [
        ("featuredContent<iframe>[0].src", Role.EMBED, "https://www.youtube.com/embed/WJk-Y8LQlfE")
    ]
    assert ("provider.images[0].url", Role.IMAGE) in [(o.location, o.role) for o in occurrences]
    assert findings == []


# --- frontmatter rules -------------------------------------------------------------------


def test_url_fields_and_roles() -> None:
    """The four URL fields map to their roles and are normalised."""
    occurrences, findings = _run(
        {
            "originalUrl": "HTTPS://Example.COM/a",
            "webUrl": "https://example.com/b#frag",
            "ampWebUrl": "http://example.com:80/amp",
            "title": "https://not-a-url-field.example/",
        }
    )
    assert _where(occurrences) == [
        ("originalUrl", Role.ORIGINAL, "https://example.com/a"),
        ("webUrl", Role.WEB, "https://example.com/b"),
        ("ampWebUrl", Role.AMP, "http://example.com/amp"),
    ]
    assert occurrences[0].raw_url == "HTTPS://Example.COM/a"
    assert findings == []


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_null_or_blank_fields_are_silent(value: object) -> None:
    """Null or blank URL fields, images and related produce nothing at all."""
    meta: dict[str, object] = {
        "webUrl": value,
        "images": [{"url": value, "width": value}],
        "related": [{"webUrl": value}],
    }
    assert _run(meta) == ([], [])
    assert _run({"images": None, "related": None, "images2": 5}) == ([], [])


def test_invalid_url_gives_occurrence_without_url_and_a_finding() -> None:
    """An invalid URL is an Occurrence with url=None plus an invalid_url finding with the raw value."""
    occurrences, findings = _run({"webUrl": "ftp://example.com/x", "images": [{"url": "no scheme.jpg"}]})
    assert [(o.location, o.url, o.raw_url) for o in occurrences] == [
        ("webUrl", None, "ftp://example.com/x"),
        ("images[0].url", None, "no scheme.jpg"),
    ]
    assert [(f.location, f.kind, f.value) for f in findings] == [
        ("webUrl", FindingKind.INVALID_URL, "ftp://example.com/x"),
        ("images[0].url", FindingKind.INVALID_URL, "no scheme.jpg"),
    ]
    assert "unsupported scheme" in findings[0].message
    assert findings[1].message == "no scheme"


def test_max_url_length_is_applied() -> None:
    """URLs longer than max_url_length are invalid_url findings."""
    url = "https://example.com/" + "a" * 100
    _, findings = _run({"webUrl": url}, max_url_length=50)
    assert [(f.location, f.kind, f.message) for f in findings] == [
        ("webUrl", FindingKind.INVALID_URL, "longer than 50 characters")
    ]
    assert _run({"webUrl": url}, max_url_length=2048)[1] == []


def test_images_declared_size_rules() -> None:
    """Positive ints and digit-only strings declare a size; a missing side declares none."""
    occurrences, findings = _run(
        {
            "images": [
                {"url": "https://i.example/0.jpg", "width": 840, "height": 473},
                {"url": "https://i.example/1.jpg", "width": "840", "height": "473"},
                {"url": "https://i.example/2.jpg", "width": 840},
                {"url": "https://i.example/3.jpg"},
                None,
                {"width": 10, "height": 10},
            ]
        }
    )
    assert [(o.location, o.declared) for o in occurrences] == [
        ("images[0].url", Size(840, 473)),
        ("images[1].url", Size(840, 473)),
        ("images[2].url", None),
        ("images[3].url", None),
    ]
    assert findings == []


@pytest.mark.parametrize("bad", ["abc", "840px", 0, -5, 8.5, True, [840], "٣"])
def test_bad_width_is_wrong_type_at_its_location(bad: object) -> None:
    """A width that is no positive whole number is wrong_type at `images[0].width`; the URL still counts."""
    occurrences, findings = _run({"images": [{"url": "https://i.example/a.jpg", "width": bad, "height": 5}]})
    assert [(o.location, o.declared) for o in occurrences] == [("images[0].url", None)]
    assert _kinds(findings) == [("images[0].width", FindingKind.WRONG_TYPE)]
    assert findings[0].message.startswith("expected a positive whole number, got ")


@pytest.mark.parametrize(
    ("meta", "location", "message"),
    [
        ({"images": "x"}, "images", "expected a list, got string"),
        ({"images": {"url": "https://a.example/"}}, "images", "expected a list, got mapping"),
        ({"images": ["https://a.example/"]}, "images[0]", "expected a mapping, got string"),
        ({"images": [{"url": 5}]}, "images[0].url", "expected a string, got integer"),
        ({"related": 5}, "related", "expected a list, got integer"),
        ({"related": ["x"]}, "related[0]", "expected a mapping, got string"),
        ({"related": [{"webUrl": ["x"]}]}, "related[0].webUrl", "expected a string, got list"),
        ({"related": [{"images": [{"height": "tall"}]}]}, "related[0].images[0].height", "got string"),
        ({"webUrl": 12}, "webUrl", "expected a string, got integer"),
        ({"cdnAmpWebUrl": True}, "cdnAmpWebUrl", "expected a string, got boolean"),
        ({"originalUrl": datetime(2020, 1, 1, tzinfo=UTC)}, "originalUrl", "got datetime"),
        ({"featuredContent": {"html": "<b>"}}, "featuredContent", "expected a string, got mapping"),
        ({"provider": {"images": 3}}, "provider.images", "expected a list, got integer"),
    ],
)
def test_wrong_types_are_findings_naming_the_location(
    meta: dict[str, object], location: str, message: str
) -> None:
    """Each wrongly typed known field is one wrong_type finding at its exact location."""
    occurrences, findings = _run(meta)
    assert occurrences == []
    assert _kinds(findings) == [(location, FindingKind.WRONG_TYPE)]
    assert message in findings[0].message
    assert findings[0].value is not None


def test_finding_values_are_clipped() -> None:
    """Wrong-type values are quoted up to 200 characters; invalid URLs whole unless absurdly long."""
    _, findings = _run({"images": "x" * 10_000})
    assert findings[0].value is not None and len(findings[0].value) == 200
    long_url = "https://a.example/" + "p" * 3000
    _, findings = _run({"webUrl": long_url, "ampWebUrl": "https://a.example/" + "q" * 100_000})
    assert findings[0].value == long_url
    assert findings[1].value is not None and len(findings[1].value) == 8192


def test_unknown_fields_and_plain_provider_are_ignored() -> None:
    """Unknown fields, URLs in them, and a provider given as text are never findings."""
    meta: dict[str, object] = {"extra": {"url": 5}, "provider": "KTLA", "tags": [None, 1], "videos": "x"}
    assert _run(meta) == ([], [])


def test_related_items_are_flagged_and_located() -> None:
    """Related items carry related=True and `related[j].` locations, including nested images."""
    occurrences, _ = _run(
        {
            "webUrl": "https://a.example/",
            "related": [
                None,
                {"webUrl": "https://b.example/", "images": [{"url": "https://b.example/i.png"}]},
            ],
        }
    )
    assert [(o.location, o.related) for o in occurrences] == [
        ("webUrl", False),
        ("related[1].webUrl", True),
        ("related[1].images[0].url", True),
    ]


def test_provider_images_are_images() -> None:
    """Publisher logos under provider.images are checked as images with their declared size."""
    occurrences, _ = _run(
        {
            "provider": {
                "name": "X",
                "images": [{"url": "https://x.example/logo.jpg", "width": 50, "height": 50}],
            },
            "related": [{"provider": {"images": [{"url": "https://y.example/l.png"}]}}],
        }
    )
    assert [(o.location, o.role, o.related, o.declared) for o in occurrences] == [
        ("provider.images[0].url", Role.IMAGE, False, Size(50, 50)),
        ("related[0].provider.images[0].url", Role.IMAGE, True, None),
    ]


# --- AMP cache consistency ---------------------------------------------------------------


def test_amp_cache_mismatch_in_related_item() -> None:
    """A cdnAmpWebUrl that is not the cache URL of ampWebUrl is a mismatch with the expected URL."""
    amp = "https://abc7.com/amp/9632866/"
    wrong = "https://abc7-com.cdn.ampproject.org/c/s/abc7.com/amp/1/"
    occurrences, findings = _run(
        {"related": [{}, {"ampWebUrl": amp, "cdnAmpWebUrl": wrong}]},
    )
    assert len(occurrences) == 2
    assert findings == [
        Finding(
            "a.md",
            "related[1].cdnAmpWebUrl",
            FindingKind.AMP_CACHE_MISMATCH,
            f"expected the AMP cache URL of related[1].ampWebUrl: {amp_cache_url(amp)}",
            wrong,
            "https://abc7-com.cdn.ampproject.org/c/s/abc7.com/amp/9632866/",
        )
    ]


def test_amp_cache_match_and_incomplete_pairs_are_silent() -> None:
    """A matching pair, a lone ampWebUrl, or an invalid member gives no mismatch finding."""
    amp = "https://www.govtech.com/a.html?AMP"
    cdn = "https://www-govtech-com.cdn.ampproject.org/c/s/www.govtech.com/a.html?AMP"
    assert _run({"ampWebUrl": amp, "cdnAmpWebUrl": cdn})[1] == []
    assert _run({"ampWebUrl": amp})[1] == []
    _, findings = _run({"ampWebUrl": "not a url", "cdnAmpWebUrl": cdn})
    assert _kinds(findings) == [("ampWebUrl", FindingKind.INVALID_URL)]


def test_amp_cache_mismatch_for_http_amp_page() -> None:
    """An http AMP page is cached without the `s/` segment; a cdn URL with it is a mismatch."""
    amp = "http://news.example.org/x/amp"
    _, findings = _run(
        {
            "ampWebUrl": amp,
            "cdnAmpWebUrl": "https://news-example-org.cdn.ampproject.org/c/s/news.example.org/x/amp",
        }
    )
    assert _kinds(findings) == [("cdnAmpWebUrl", FindingKind.AMP_CACHE_MISMATCH)]
    assert findings[0].expected == "https://news-example-org.cdn.ampproject.org/c/news.example.org/x/amp"


# --- HTML fields -------------------------------------------------------------------------


def test_featured_content_html_tags_and_roles() -> None:
    """iframe/video/source → EMBED, img and poster → IMAGE, a → BODY_LINK; indexes count per tag."""
    html = (
        '<iframe src="https://www.youtube.com/embed/a"></iframe><p><a href="https://l.example/">x</a>'
        '<img src="https://i.example/a.jpg" width="640" height="360"><img src="https://i.example/b.jpg">'
        '<video src="https://v.example/v.mp4" poster="https://v.example/p.jpg"><source src="https://v.example/v.webm">'
        '</video><a href="#top">top</a><a href="mailto:x@example.com">m</a><a>no href</a>'
        '<iframe src="https://x.example/?a=1&amp;b=2"></iframe>'
    )
    occurrences, findings = _run({"related": [{"featuredContent": html}]})
    assert [(o.location, o.role, o.url, o.declared) for o in occurrences] == [
        ("related[0].featuredContent<iframe>[0].src", Role.EMBED, "https://www.youtube.com/embed/a", None),
        ("related[0].featuredContent<a>[0].href", Role.BODY_LINK, "https://l.example/", None),
        ("related[0].featuredContent<img>[0].src", Role.IMAGE, "https://i.example/a.jpg", Size(640, 360)),
        ("related[0].featuredContent<img>[1].src", Role.IMAGE, "https://i.example/b.jpg", None),
        ("related[0].featuredContent<video>[0].src", Role.EMBED, "https://v.example/v.mp4", None),
        ("related[0].featuredContent<video>[1].poster", Role.IMAGE, "https://v.example/p.jpg", None),
        ("related[0].featuredContent<source>[0].src", Role.EMBED, "https://v.example/v.webm", None),
        ("related[0].featuredContent<iframe>[1].src", Role.EMBED, "https://x.example/?a=1&b=2", None),
    ]
    assert all(o.related for o in occurrences)
    assert findings == []


def test_featured_content_without_markup_or_with_broken_markup() -> None:
    """Plain text is ignored; unterminated or odd markup never raises."""
    assert _run({"featuredContent": "just words"}) == ([], [])
    occurrences, _ = _run(
        {"featuredContent": '<![if x]><iframe src="https://a.example/"><img src="https://b'}
    )
    assert _where(occurrences) == [("featuredContent<iframe>[0].src", Role.EMBED, "https://a.example/")]


# --- body --------------------------------------------------------------------------------

BODY = """Intro [link](https://a.example/x) and ![pic](https://b.example/i.png "t")
second <https://c.example/auto> then [ref][r], [mail](mailto:x@y.example) [top](#top) [rel](/about)

| a | b |
|---|---|
| [cell](https://t.example/) | x |

<div>
<iframe src="https://www.youtube.com/embed/x"></iframe>
<img src="https://d.example/p.jpg" width="10" height="20">
</div>

Text with <a href="https://e.example/">inline</a> and
<img src="https://f.example/i.gif"> html.

[![nested](https://img.example/n.png)](https://link.example/)

[r]: https://ref.example/page
"""


def test_body_markdown_and_html_locations_and_roles() -> None:
    """Links, images, autolinks, reference links, tables and HTML are found with their body line."""
    occurrences, findings = _run(body=BODY)
    assert [(o.location, o.role, o.raw_url, o.declared) for o in occurrences] == [
        ("body:1", Role.BODY_LINK, "https://a.example/x", None),
        ("body:1#2", Role.BODY_IMAGE, "https://b.example/i.png", None),
        ("body:2", Role.BODY_LINK, "https://c.example/auto", None),
        ("body:2#2", Role.BODY_LINK, "https://ref.example/page", None),
        ("body:2#3", Role.BODY_LINK, "/about", None),
        ("body:6", Role.BODY_LINK, "https://t.example/", None),
        ("body:9", Role.EMBED, "https://www.youtube.com/embed/x", None),
        ("body:10", Role.BODY_IMAGE, "https://d.example/p.jpg", Size(10, 20)),
        ("body:13", Role.BODY_LINK, "https://e.example/", None),
        ("body:14", Role.BODY_IMAGE, "https://f.example/i.gif", None),
        ("body:16", Role.BODY_LINK, "https://link.example/", None),
        ("body:16#2", Role.BODY_IMAGE, "https://img.example/n.png", None),
    ]
    assert not any(o.related for o in occurrences)
    assert [(f.location, f.kind, f.message, f.value) for f in findings] == [
        ("body:2#3", FindingKind.INVALID_URL, "relative URL", "/about")
    ]


def test_body_urls_are_kept_as_written_then_normalised_once() -> None:
    """markdown-it does not percent-encode or punycode: raw_url is what the author wrote."""
    occurrences, findings = _run(body="[x](https://bücher.example/ä) [y](<https://a.example/a b>)\n")
    assert [(o.raw_url, o.url) for o in occurrences] == [
        ("https://bücher.example/ä", "https://xn--bcher-kva.example/%C3%A4"),
        ("https://a.example/a b", "https://a.example/a%20b"),  # as a browser reads it
    ]
    assert findings == []


@pytest.mark.parametrize(
    "body",
    ["[a](#x)", "[a](mailto:me@example.com)", "[a](tel:+123)", '<a href="javascript:void(0)">x</a>', "[a]()"],
)
def test_body_anchors_and_non_resources_are_skipped(body: str) -> None:
    """Fragment-only links and mailto/tel/javascript/empty links are neither occurrences nor findings."""
    assert _run(body=body + "\n") == ([], [])


# --- robustness --------------------------------------------------------------------------

_FIELD_NAMES = st.sampled_from(
    [
        "originalUrl",
        "webUrl",
        "ampWebUrl",
        "cdnAmpWebUrl",
        "images",
        "url",
        "width",
        "height",
        "related",
        "provider",
        "featuredContent",
        "title",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.datetimes(timezones=st.just(UTC))
    | st.text(max_size=30)
    | st.sampled_from(["https://a.example/x", "840", "<iframe src='https://y.example/'>", "//x", "#a"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_FIELD_NAMES | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=25,
)
_BODY_PIECES = st.sampled_from(
    [
        "[a](",
        ")",
        "![",
        "](https://x.example/",
        "<a href='",
        "'>",
        "<img src=",
        "\n",
        "[r]: ",
        "<https://q.example/>",
        "`",
        "<!--",
        "|",
        "#",
        " ",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meta=st.dictionaries(_FIELD_NAMES, _VALUES, max_size=8),
    body=st.lists(_BODY_PIECES | st.text(max_size=10), max_size=20),
)
def test_extract_never_raises_on_arbitrary_metadata(meta: dict[str, object], body: list[str]) -> None:
    """Random nested metadata and body text never raise, and every url=None occurrence has a finding."""
    occurrences, findings = extract(_article(meta, "".join(body)))
    invalid = {f.location for f in findings if f.kind is FindingKind.INVALID_URL}
    for occurrence in occurrences:
        assert occurrence.article == "a.md"
        assert (occurrence.url is None) == (occurrence.location in invalid)
    assert all(f.article == "a.md" for f in findings)


def test_deep_unknown_nesting_is_not_walked() -> None:
    """A 100,000-deep structure in an unknown field (or inside images) is never looked into."""

    class Tripwire(list[object]):
        def __iter__(self) -> Iterator[object]:
            raise AssertionError("walked into an unknown field")

        def __getitem__(self, index: object) -> object:
            raise AssertionError("walked into an unknown field")

    deep: object = "https://a.example/"
    for _ in range(100_000):
        deep = Tripwire([deep])
    occurrences, findings = _run(
        {"extra": deep, "images": [{"url": "https://b.example/", "extra": deep}], "related": [deep]}
    )
    assert _where(occurrences) == [("images[0].url", Role.IMAGE, "https://b.example/")]
    assert _kinds(findings) == [("related[0]", FindingKind.WRONG_TYPE)]
