"""Links stage: every URL an article carries, where it is written, and what is wrong with it.

``extract`` never raises and never recurses into fields it does not know, so arbitrary
frontmatter costs at most one pass over the known fields. Rules:

* Frontmatter fields, for the article and for each ``related[j]`` item (``related=True``):
  ``originalUrl``, ``webUrl``, ``ampWebUrl``, ``cdnAmpWebUrl``; ``images[i].url`` and
  ``provider.images[i].url`` (publisher logos) with the declared size from
  ``width``/``height``; and the HTML field ``featuredContent`` (YouTube iframes), where
  iframe/embed/video/audio/source/track/object → EMBED, img and video poster → IMAGE,
  a href → BODY_LINK, located like ``featuredContent<iframe>[0].src``.
* Body: Markdown links, images, autolinks and reference links (markdown-it-py), plus
  inline and block HTML as above but with img → BODY_IMAGE. Located ``body:N`` where N
  is the 1-based line of the body (the line after the closing ``---`` is 1); a second
  URL on the same line is ``body:N#2``. Fragment-only links and mailto/tel/sms/
  javascript/data URLs are not checkable resources and are skipped silently; any other
  relative link becomes an invalid_url finding ("relative URL"): without a base URL it
  cannot be checked, and the page it points to is probably broken when published.
* Missing, null and empty-string values are silent. A value of the wrong type is a
  wrong_type finding at its location. ``width``/``height`` accept positive integers
  and digit-only strings ("840"); anything else is wrong_type.
* Every URL goes through ``normalise_url``; an invalid one gives an Occurrence with
  ``url=None`` plus an invalid_url finding. When ``ampWebUrl`` and ``cdnAmpWebUrl``
  are both valid, a cdn URL that is not the AMP cache URL of the amp URL is an
  amp_cache_mismatch finding at ``cdnAmpWebUrl``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from monitor.config import DEFAULT_AMP_CACHE_TEMPLATE
from monitor.types import Article, Finding, FindingKind, Occurrence, Role, Size
from monitor.urls import InvalidUrl, amp_cache_matches, normalise_url

__all__ = ["extract"]

_URL_FIELDS = (
    ("originalUrl", Role.ORIGINAL),
    ("webUrl", Role.WEB),
    ("ampWebUrl", Role.AMP),
    ("cdnAmpWebUrl", Role.CDN_AMP),
)
_HTML_FIELDS = ("featuredContent",)
_EMBED_ATTRS = {
    "iframe": "src",
    "embed": "src",
    "video": "src",
    "audio": "src",
    "source": "src",
    "track": "src",
    "object": "data",
}
_NOT_RESOURCES = ("mailto:", "tel:", "sms:", "javascript:", "data:")
_MAX_VALUE_CHARS = 200
_MAX_TITLE_CHARS = 500  # an item's title as kept with its URLs
_MAX_URL_VALUE_CHARS = 8192  # above any max_url_length worth using; a megabyte "URL" is clipped


def _bounded_repr() -> reprlib.Repr:
    """repr that stays small and shallow whatever the value (a plain repr of a deep list recurses)."""
    shape = reprlib.Repr()
    shape.maxlevel, shape.maxstring, shape.maxother = 3, _MAX_VALUE_CHARS, _MAX_VALUE_CHARS
    return shape


_REPR = _bounded_repr()


def _short(value: object, limit: int = _MAX_VALUE_CHARS) -> str:
    """The value quoted in a finding: whole for any sensible URL, clipped for junk."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: object) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer"}.get(
        type(value), type(value).__name__
    )


class _Collector:
    """Accumulates the occurrences and findings of one article."""

    __slots__ = ("article", "findings", "max_url_length", "occurrences", "template")

    def __init__(self, article: str, max_url_length: int, template: str) -> None:
        self.article = article
        self.max_url_length = max_url_length
        self.template = template
        self.occurrences: list[Occurrence] = []
        self.findings: list[Finding] = []

    def url(
        self,
        location: str,
        role: Role,
        raw: str,
        related: bool,
        declared: Size | None = None,
        title: str | None = None,
    ) -> str | None:
        """Record one URL; returns its normal form, or None (with a finding) when invalid."""
        normal = normalise_url(raw, max_length=self.max_url_length)
        if isinstance(normal, InvalidUrl):
            self.occurrences.append(
                Occurrence(self.article, location, role, related, raw, None, declared, title)
            )
            self.findings.append(
                Finding(
                    self.article,
                    location,
                    FindingKind.INVALID_URL,
                    normal.reason,
                    _short(raw, _MAX_URL_VALUE_CHARS),
                )
            )
            return None
        self.occurrences.append(
            Occurrence(self.article, location, role, related, raw, normal, declared, title)
        )
        return normal

    def wrong_type(self, location: str, expected: str, value: object) -> None:
        message = f"expected {expected}, got {_type_name(value)}"
        self.findings.append(Finding(self.article, location, FindingKind.WRONG_TYPE, message, _short(value)))

    def text(self, location: str, value: object) -> str | None:
        """A non-blank string field, or None; a non-string value is a wrong_type finding."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong_type(location, "a string", value)
            return None
        return value if value.strip() else None


# --- frontmatter -------------------------------------------------------------------------


def _dimension(c: _Collector, value: object, location: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    c.wrong_type(location, "a positive whole number", value)
    return None


def _images(c: _Collector, value: object, location: str, related: bool) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        c.wrong_type(location, "a list", value)
        return
    for index, image in enumerate(value):
        here = f"{location}[{index}]"
        if image is None:
            continue
        if not isinstance(image, Mapping):
            c.wrong_type(here, "a mapping", image)
            continue
        width = _dimension(c, image.get("width"), here + ".width")
        height = _dimension(c, image.get("height"), here + ".height")
        raw = c.text(here + ".url", image.get("url"))
        if raw is not None:
            declared = Size(width, height) if width and height else None
            c.url(here + ".url", Role.IMAGE, raw, related, declared)


def _item(c: _Collector, item: Mapping[Any, object], prefix: str, related: bool) -> None:
    """One article-like mapping: the article itself, or one of its related items."""
    normal: dict[str, str | None] = {}
    title = item.get("title")  # what the item's pages should be titled (title drift)
    own = (title.strip()[:_MAX_TITLE_CHARS] or None) if isinstance(title, str) else None
    for name, role in _URL_FIELDS:
        raw = c.text(prefix + name, item.get(name))
        if raw is not None:
            normal[name] = c.url(prefix + name, role, raw, related, title=own)
    _images(c, item.get("images"), prefix + "images", related)
    provider = item.get("provider")
    if isinstance(provider, Mapping):  # a provider given as plain text has no images: not an error
        _images(c, provider.get("images"), prefix + "provider.images", related)
    for name in _HTML_FIELDS:
        html = c.text(prefix + name, item.get(name))
        if html is not None and "<" in html:
            _html(c, html, related, prefix + name)
    amp, cdn = normal.get("ampWebUrl"), normal.get("cdnAmpWebUrl")
    if amp is not None and cdn is not None:
        matches, expected = amp_cache_matches(amp, cdn, c.template)
        if not matches and expected is not None:
            c.findings.append(
                Finding(
                    c.article,
                    prefix + "cdnAmpWebUrl",
                    FindingKind.AMP_CACHE_MISMATCH,
                    f"expected the AMP cache URL of {prefix}ampWebUrl: {expected}",
                    _short(item.get("cdnAmpWebUrl"), _MAX_URL_VALUE_CHARS),
                    expected,
                )
            )


# --- HTML --------------------------------------------------------------------------------


class _TagCollector(HTMLParser):
    """Collects (tag, attribute, value, line, declared size) for URL-carrying attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, str, int, Size | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        line = self.getpos()[0]
        if tag == "a":
            self._add(tag, "href", values, line)
        elif tag == "img":
            width, height = values.get("width") or "", values.get("height") or ""
            size = None
            if width.isascii() and width.isdigit() and height.isascii() and height.isdigit():
                size = Size(int(width), int(height)) if int(width) and int(height) else None
            self._add(tag, "src", values, line, size)
        elif tag in _EMBED_ATTRS:
            self._add(tag, _EMBED_ATTRS[tag], values, line)
            if tag == "video":
                self._add(tag, "poster", values, line)

    def _add(
        self, tag: str, attr: str, values: dict[str, str | None], line: int, size: Size | None = None
    ) -> None:
        value = values.get(attr)
        if value is not None:
            self.found.append((tag, attr, value, line, size))


def _role(tag: str, attr: str, in_body: bool) -> Role:
    if tag == "a":
        return Role.BODY_LINK
    if tag == "img" or attr == "poster":
        return Role.BODY_IMAGE if in_body else Role.IMAGE
    return Role.EMBED


def _checkable(raw: str) -> bool:
    """Content links that are not fetchable resources (anchors, mail, scripts) are skipped."""
    text = raw.strip()
    return bool(text) and not text.startswith("#") and not text.lower().startswith(_NOT_RESOURCES)


def _parse_html(html: str) -> list[tuple[str, str, str, int, Size | None]]:
    parser = _TagCollector()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # older html.parser versions assert on odd markup
        pass
    return parser.found


def _html(c: _Collector, html: str, related: bool, field: str) -> None:
    """URLs of one HTML fragment in a frontmatter field, located like ``field<iframe>[0].src``."""
    counts: dict[str, int] = {}
    for tag, attr, raw, _line, size in _parse_html(html):
        n = counts.get(tag, 0)
        counts[tag] = n + 1
        if _checkable(raw):
            c.url(f"{field}<{tag}>[{n}].{attr}", _role(tag, attr, in_body=False), raw, related, size)


# --- body --------------------------------------------------------------------------------


class _Markdown(MarkdownIt):
    """CommonMark with tables and strikethrough, keeping URLs as written (no percent-encoding
    or punycode: ``normalise_url`` is the one normaliser)."""

    def normalizeLink(self, url: str) -> str:
        return url


# The one body parser; public so a test can stand in for it and see which bodies are parsed.
MARKDOWN = _Markdown("commonmark").enable(["table", "strikethrough"])


class _BodyLocations:
    """``body:N`` for the first URL on line N, ``body:N#k`` for the k-th."""

    def __init__(self) -> None:
        self.per_line: dict[int, int] = {}

    def __call__(self, line: int) -> str:
        k = self.per_line.get(line, 0) + 1
        self.per_line[line] = k
        return f"body:{line}" if k == 1 else f"body:{line}#{k}"


def _body(c: _Collector, body: str) -> None:
    if not body.strip() or ("[" not in body and "<" not in body):
        return  # no link, image, autolink or HTML is possible without these
    locate = _BodyLocations()
    line = 1
    for token in MARKDOWN.parse(body):
        if token.map is not None:
            line = token.map[0] + 1
        if token.type == "html_block":
            _body_html(c, token.content, line, locate)
        elif token.type == "inline" and token.children:
            _inline(c, token.children, line, locate)


def _inline(c: _Collector, children: list[Token], line: int, locate: _BodyLocations) -> None:
    for child in children:
        kind = child.type
        if kind in ("softbreak", "hardbreak"):
            line += 1
        elif kind == "link_open":
            href = child.attrs.get("href")
            if isinstance(href, str) and _checkable(href):
                c.url(locate(line), Role.BODY_LINK, href, False)
        elif kind == "image":
            src = child.attrs.get("src")
            if isinstance(src, str) and _checkable(src):
                c.url(locate(line), Role.BODY_IMAGE, src, False)
        elif kind == "html_inline":
            _body_html(c, child.content, line, locate)
            line += child.content.count("\n")


def _body_html(c: _Collector, html: str, first_line: int, locate: _BodyLocations) -> None:
    for tag, attr, raw, line, size in _parse_html(html):
        if _checkable(raw):
            c.url(locate(first_line + line - 1), _role(tag, attr, in_body=True), raw, False, size)


# --- entry point -------------------------------------------------------------------------


def extract(
    article: Article,
    *,
    max_url_length: int = 2048,
    amp_template: str = DEFAULT_AMP_CACHE_TEMPLATE,
) -> tuple[list[Occurrence], list[Finding]]:
    """All URL occurrences of ``article`` (frontmatter first, then body) and the findings
    that need no network: invalid URLs, wrong types and AMP cache mismatches."""
    c = _Collector(article.path, max_url_length, amp_template)
    meta = article.meta
    if isinstance(meta, Mapping):
        _item(c, meta, "", related=False)
        related = meta.get("related")
        if isinstance(related, list):
            for index, item in enumerate(related):
                if isinstance(item, Mapping):
                    _item(c, item, f"related[{index}].", related=True)
                elif item is not None:
                    c.wrong_type(f"related[{index}]", "a mapping", item)
        elif related is not None:
            c.wrong_type("related", "a list", related)
    if isinstance(article.body, str):
        _body(c, article.body)
    return c.occurrences, c.findings
