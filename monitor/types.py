"""The shared vocabulary of link-media-monitor.

Every stage (corpus → links → fetch → verdict → store → report/alert) imports its
input and output types from here and never from a later stage. Values are frozen,
slotted dataclasses; closed vocabularies are ``StrEnum`` so they persist and
serialise as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """Where in an article a URL was found; drives fetch kind and verdict policy."""

    ORIGINAL = "original"
    WEB = "web"
    AMP = "amp"
    CDN_AMP = "cdn_amp"
    IMAGE = "image"
    EMBED = "embed"
    BODY_LINK = "body_link"
    BODY_IMAGE = "body_image"

    @property
    def is_image(self) -> bool:
        return self in (Role.IMAGE, Role.BODY_IMAGE)


class TargetKind(StrEnum):
    """How a URL is fetched: pages by HEAD (GET fallback), images by header bytes."""

    PAGE = "page"
    IMAGE = "image"


class Verdict(StrEnum):
    """The judgement of one URL in one run (README: "Verdicts")."""

    OK = "ok"
    REDIRECTED = "redirected"
    MOVED_PERMANENTLY = "moved_permanently"
    BROKEN = "broken"
    SOFT_404 = "soft_404"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    NOT_IMAGE = "not_image"
    IMAGE_UNREADABLE = "image_unreadable"
    INVALID_URL = "invalid_url"
    SKIPPED = "skipped"
    AMP_RETIRED = "amp_retired"
    AMP_NOT_CACHED = "amp_not_cached"
    TITLE_MISMATCH = "title_mismatch"  # works, but the page's title is not the article's (title drift)

    @property
    def is_good(self) -> bool:
        """The URL works (possibly via redirects)."""
        return self in _GOOD

    @property
    def is_failure(self) -> bool:
        """Counts towards a failure streak (everything that is neither good nor skipped)."""
        return not self.is_good and self is not Verdict.SKIPPED


_GOOD = frozenset(
    {Verdict.OK, Verdict.REDIRECTED, Verdict.MOVED_PERMANENTLY, Verdict.AMP_RETIRED, Verdict.TITLE_MISMATCH}
)


class Severity(StrEnum):
    """How a verdict counts: errors fail a run (exit 2), warnings are reported, ignore is silent."""

    ERROR = "error"
    WARNING = "warning"
    IGNORE = "ignore"


class SizeCheck(StrEnum):
    """Declared image size versus the real displayed size, per occurrence."""

    MATCH = "match"
    SCALED = "scaled"
    SIZE_MISMATCH = "size_mismatch"
    UNKNOWN = "unknown"


class FindingKind(StrEnum):
    """Problems found in an article without any network access."""

    INVALID_URL = "invalid_url"
    AMP_CACHE_MISMATCH = "amp_cache_mismatch"
    WRONG_TYPE = "wrong_type"


class FetchFailure(StrEnum):
    """Why a fetch produced no usable HTTP answer; mapped from exceptions in one place (fetch.py)."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    RESET = "reset"
    TLS = "tls"
    PROTOCOL = "protocol"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    REDIRECT_LOOP = "redirect_loop"
    BAD_REDIRECT = "bad_redirect"  # redirect to another scheme or an unparsable Location
    TOO_LARGE = "too_large"
    BLOCKED_ADDRESS = "blocked_address"  # SSRF guard refused the resolved address
    INVALID_URL = "invalid_url"


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class Article:
    """One parsed corpus file. ``path`` is the display path: its root joined with the relative path."""

    path: str
    title: str | None
    meta: dict[str, object]
    body: str
    size: int
    mtime_ns: int
    sha256: str


class CorpusErrorKind(StrEnum):
    """Why a file or root gave no article; stored, logged and reported as its plain value."""

    NOT_FOUND = "not_found"  # a root that does not exist
    UNREADABLE = "unreadable"  # an OS error, or not a regular file
    EMPTY = "empty"  # empty, or only whitespace (and a byte order mark)
    TOO_LARGE = "too_large"
    BINARY = "binary"  # NUL bytes or many control bytes
    NOT_UTF8 = "not_utf8"
    NO_FRONTMATTER = "no_frontmatter"  # no opening '---' line, or it is never closed
    YAML_SYNTAX = "yaml_syntax"
    YAML_UNSAFE_TAG = "yaml_unsafe_tag"  # a tag SafeLoader cannot build, e.g. !!python/object
    YAML_ALIAS_BOMB = "yaml_alias_bomb"  # aliases expand past a limit, or refer to themselves
    NOT_MAPPING = "not_mapping"  # the frontmatter is a list or a scalar


@dataclass(frozen=True, slots=True)
class CorpusError:
    """A file that could not be read as an article; the run goes on without it."""

    path: str
    kind: CorpusErrorKind
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = f":{self.line}:{self.column}" if self.line is not None else ""
        return f"{self.path}{where}: {self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One URL as written at one place of one article.

    ``url`` is the normalised fetch target, or None when ``raw_url`` is not checkable
    (then a Finding of kind invalid_url exists for the same location).
    """

    article: str
    location: str  # path inside the frontmatter, e.g. "related[1].images[0].url", or "body:12"
    role: Role
    related: bool
    raw_url: str
    url: str | None
    declared: Size | None = None
    title: str | None = None  # of an originalUrl/webUrl/ampWebUrl/cdnAmpWebUrl: its item's title


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found without network access, attributed to article and location."""

    article: str
    location: str
    kind: FindingKind
    message: str
    value: str | None = None
    expected: str | None = None


@dataclass(frozen=True, slots=True)
class Hop:
    """One answered request in a redirect chain."""

    url: str
    status: int
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One unique unit of fetching: a normalised URL and how to fetch it."""

    url: str
    host: str
    kind: TargetKind
    roles: frozenset[Role] = frozenset()
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the header probe learned about image bytes."""

    format: str | None
    size: Size | None  # displayed size (EXIF orientation 5-8 swaps the axes)
    error: str | None = None  # "not_image" or "unreadable" with reason in ``detail``
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SoftBaseline:
    """What a made-up URL of one host (and first path segment) answered: the soft-404 baseline.

    ``soft`` is whether it answered 200 (after redirects): then that host serves "not found"
    pages as ordinary pages, and ``fingerprint``/``title`` describe that page (``monitor.pagesim``).
    """

    host: str  # host key (``host:port`` off the default port)
    prefix: str  # the first path segment the probe stands for ("" for pages at the root)
    url: str  # the made-up URL that was requested
    status: int
    soft: bool
    title: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """Facts about fetching one Target; no judgement (that is verdict.py's job)."""

    url: str
    status: int | None = None
    final_url: str | None = None
    redirects: tuple[Hop, ...] = ()
    attempts: int = 1
    elapsed_ms: int = 0
    method: str = "HEAD"
    content_type: str | None = None
    bytes_read: int = 0
    failure: FetchFailure | None = None
    failure_detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased subset worth keeping
    image: ImageFacts | None = None
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    image_digest: str | None = None  # "sha256 of the first 1 KB:full size:content type" (placeholder images)
    title: str | None = None  # <title> of a page body read (or of an error page read for bot-wall markers)
    og_title: str | None = None  # ``og:title`` of a page body read
    body_print: str | None = None  # fingerprint of the body read (only on a host with a soft-404 baseline)
    baseline: SoftBaseline | None = None  # that host's soft-404 baseline, when the body was compared


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    severity: Severity
    reason: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A Target, what fetching it showed, and what that means."""

    target: Target
    outcome: FetchOutcome
    judgement: Judgement


# The verdicts of a page that is gone, whose readers an archived copy can still serve.
ARCHIVE_VERDICTS = (Verdict.BROKEN, Verdict.SOFT_404)


@dataclass(frozen=True, slots=True)
class ArchiveSnapshot:
    """An archived copy of a page (Wayback Machine or pywb): its address and capture time."""

    url: str
    timestamp: str  # as the archive writes it: YYYYMMDDhhmmss, UTC

    @property
    def captured(self) -> str:
        """The capture time as ``2019-03-01 12:00:00 UTC`` (the raw timestamp if it is not 14 digits)."""
        t = self.timestamp
        if len(t) != 14 or not t.isdigit():
            return t
        return f"{t[:4]}-{t[4:6]}-{t[6:8]} {t[8:10]}:{t[10:12]}:{t[12:14]} UTC"

    @property
    def captured_iso(self) -> str | None:
        t = self.timestamp
        if len(t) != 14 or not t.isdigit():
            return None
        return f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}Z"
