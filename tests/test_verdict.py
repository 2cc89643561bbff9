"""Table tests for monitor.verdict: facts + policy → (verdict, severity, reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from monitor.config import ImageSettings
from monitor.policy import VerdictPolicy
from monitor.types import (
    FetchFailure,
    FetchOutcome,
    Hop,
    ImageFacts,
    Role,
    Severity,
    Size,
    SizeCheck,
    Target,
    TargetKind,
    Verdict,
)
from monitor.verdict import classify, severity_for, size_check

URL = "https://news.example.com/a"
AMP_CACHE = "https://news-example-com.cdn.ampproject.org/c/s/news.example.com/a"
IMG = "https://img.example.com/p.jpg"
ERR, WRN, IGN = Severity.ERROR, Severity.WARNING, Severity.IGNORE
DEFAULT = VerdictPolicy()


def page(url: str = URL, *roles: Role) -> Target:
    host = url.split("/")[2]
    return Target(url=url, host=host, kind=TargetKind.PAGE, roles=frozenset(roles or {Role.WEB}))


def image(url: str = IMG) -> Target:
    return Target(url=url, host="img.example.com", kind=TargetKind.IMAGE, roles=frozenset({Role.IMAGE}))


def out(url: str = URL, **kw: Any) -> FetchOutcome:
    return FetchOutcome(url=url, **kw)


@dataclass(frozen=True)
class Case:
    id: str
    target: Target
    outcome: FetchOutcome
    verdict: Verdict
    severity: Severity
    reason: str
    policy: VerdictPolicy = field(default=DEFAULT)


def hops(*statuses: int, url: str = URL) -> tuple[Hop, ...]:
    return tuple(Hop(url=f"{url}?{n}", status=s, location=f"{url}?{n + 1}") for n, s in enumerate(statuses))


CF = {"cf-mitigated": "challenge", "server": "cloudflare"}
CASES = [
    Case("200", page(), out(status=200, final_url=URL), Verdict.OK, IGN, "HTTP 200"),
    Case("204", page(), out(status=204), Verdict.OK, IGN, "HTTP 204"),
    Case("304", page(), out(status=304, not_modified=True), Verdict.OK, IGN, "not modified since last check"),
    Case("304-status-only", page(), out(status=304), Verdict.OK, IGN, "not modified"),
    Case(
        "302",
        page(),
        out(status=200, final_url=URL + "/new", redirects=hops(302)),
        Verdict.REDIRECTED,
        IGN,
        "temporary redirect (302) to https://news.example.com/a/new",
    ),
    Case(
        "303-307",
        page(),
        out(status=200, final_url=URL + "/x", redirects=hops(303, 307)),
        Verdict.REDIRECTED,
        IGN,
        "(303/307)",
    ),
    Case(
        "301",
        page(),
        out(status=200, final_url="https://www.example.org/b", redirects=hops(301)),
        Verdict.MOVED_PERMANENTLY,
        WRN,
        "update the link to https://www.example.org/b",
    ),
    Case(
        "302-then-308",
        page(),
        out(status=200, final_url=URL + "/z", redirects=hops(302, 308)),
        Verdict.MOVED_PERMANENTLY,
        WRN,
        "moved permanently (302/308)",
    ),
    Case("404", page(), out(status=404), Verdict.BROKEN, ERR, "HTTP 404"),
    Case("410", page(), out(status=410), Verdict.BROKEN, ERR, "HTTP 410"),
    Case(
        "500-retried", page(), out(status=500, attempts=4), Verdict.BROKEN, ERR, "HTTP 500 after 4 attempts"
    ),
    Case("301-then-404", page(), out(status=404, redirects=hops(301)), Verdict.BROKEN, ERR, "HTTP 404"),
    Case("final-3xx", page(), out(status=300), Verdict.BROKEN, ERR, "no redirect to follow"),
    Case(
        "loop",
        page(),
        out(failure=FetchFailure.REDIRECT_LOOP, redirects=hops(302, 302)),
        Verdict.BROKEN,
        ERR,
        "redirect loop",
    ),
    Case(
        "hops",
        page(),
        out(failure=FetchFailure.TOO_MANY_REDIRECTS),
        Verdict.BROKEN,
        ERR,
        "too many redirects",
    ),
    Case(
        "scheme",
        page(),
        out(failure=FetchFailure.BAD_REDIRECT, failure_detail="to ftp://x"),
        Verdict.BROKEN,
        ERR,
        "bad redirect (other scheme or unusable Location): to ftp://x",
    ),
    Case("too-large", page(), out(failure=FetchFailure.TOO_LARGE), Verdict.BROKEN, ERR, "too large"),
    Case(
        "timeout",
        page(),
        out(failure=FetchFailure.TIMEOUT, attempts=4),
        Verdict.TIMEOUT,
        WRN,
        "timed out after 4 attempts",
    ),
    Case("dns", page(), out(failure=FetchFailure.DNS), Verdict.UNREACHABLE, ERR, "DNS lookup failed"),
    Case("refused", page(), out(failure=FetchFailure.CONNECT), Verdict.UNREACHABLE, ERR, "connection failed"),
    Case("reset", page(), out(failure=FetchFailure.RESET), Verdict.UNREACHABLE, ERR, "connection reset"),
    Case(
        "tls",
        page(),
        out(failure=FetchFailure.TLS, failure_detail="certificate\n  expired"),
        Verdict.UNREACHABLE,
        ERR,
        "TLS error: certificate expired",
    ),
    Case("protocol", page(), out(failure=FetchFailure.PROTOCOL), Verdict.UNREACHABLE, ERR, "protocol error"),
    Case("no-status", page(), out(), Verdict.UNREACHABLE, ERR, "no HTTP answer"),
    Case("429", page(), out(status=429, attempts=4), Verdict.RATE_LIMITED, WRN, "HTTP 429) after 4 attempts"),
    Case("999", page(), out(status=999), Verdict.BLOCKED, WRN, "HTTP 999"),
    Case(
        "cf-403", page(), out(status=403, headers=CF), Verdict.BLOCKED, WRN, "Cloudflare challenge, HTTP 403"
    ),
    Case("cf-503", page(), out(status=503, headers=CF), Verdict.BLOCKED, WRN, "Cloudflare"),
    Case(
        "cf-not-challenge",
        page(),
        out(status=403, headers={"cf-mitigated": "block"}),
        Verdict.BROKEN,
        ERR,
        "HTTP 403",
    ),
    Case(
        "cloudflare-server-only",
        page(),
        out(status=403, headers={"server": "cloudflare"}),
        Verdict.BROKEN,
        ERR,
        "HTTP 403",
    ),
    Case(
        "datadome",
        page(),
        out(status=403, headers={"x-datadome": "protected"}),
        Verdict.BLOCKED,
        WRN,
        "DataDome",
    ),
    Case("datadome-b", page(), out(status=401, headers={"x-dd-b": "1"}), Verdict.BLOCKED, WRN, "DataDome"),
    Case(
        "aws-waf",
        page(),
        out(status=403, headers={"x-amzn-waf-action": "captcha"}),
        Verdict.BLOCKED,
        WRN,
        "AWS",
    ),
    Case(
        "akamai-403", page(), out(status=403, headers={"akamai-grn": "0.1"}), Verdict.BLOCKED, WRN, "Akamai"
    ),
    Case(
        "akamai-503", page(), out(status=503, headers={"akamai-grn": "0.1"}), Verdict.BROKEN, ERR, "HTTP 503"
    ),
    Case(
        "marker-on-404", page(), out(status=404, headers={"x-datadome": "1"}), Verdict.BROKEN, ERR, "HTTP 404"
    ),
    Case("plain-403", page(), out(status=403), Verdict.BROKEN, ERR, "HTTP 403"),
    Case("plain-401", page(), out(status=401), Verdict.BROKEN, ERR, "HTTP 401"),
    Case("invalid", page(), out(failure=FetchFailure.INVALID_URL), Verdict.INVALID_URL, ERR, "invalid URL"),
    Case(
        "ssrf",
        page(),
        out(failure=FetchFailure.BLOCKED_ADDRESS, failure_detail="10.0.0.1 is private"),
        Verdict.SKIPPED,
        IGN,
        "skipped: address not allowed by the safety policy: 10.0.0.1 is private",
    ),
    Case(
        "image-ok",
        image(),
        out(IMG, status=200, image=ImageFacts("jpeg", Size(10, 10))),
        Verdict.OK,
        IGN,
        "HTTP 200",
    ),
    Case(
        "not-image",
        image(),
        out(
            IMG, status=200, content_type="text/html", image=ImageFacts(None, None, "not_image", "html page")
        ),
        Verdict.NOT_IMAGE,
        ERR,
        "not an image (text/html): html page",
    ),
    Case(
        "unreadable",
        image(),
        out(IMG, status=200, image=ImageFacts("png", None, "unreadable", "truncated IHDR")),
        Verdict.IMAGE_UNREADABLE,
        ERR,
        "image unreadable: truncated IHDR",
    ),
    Case("image-404", image(), out(IMG, status=404), Verdict.BROKEN, ERR, "HTTP 404"),
    Case(
        "accepted-403",
        page(),
        out(status=403),
        Verdict.OK,
        IGN,
        "HTTP 403 (accepted by policy)",
        VerdictPolicy(accept_statuses=[403]),
    ),
    Case(
        "accepted-999-moved",
        page(),
        out(status=999, final_url=URL + "/m", redirects=hops(301)),
        Verdict.MOVED_PERMANENTLY,
        WRN,
        "moved permanently",
        VerdictPolicy(accept_statuses=[999]),
    ),
    Case(
        "amp-404",
        page(AMP_CACHE, Role.CDN_AMP),
        out(AMP_CACHE, status=404),
        Verdict.AMP_NOT_CACHED,
        IGN,
        "AMP cache: not cached (HTTP 404)",
    ),
    Case(
        "amp-500",
        page(AMP_CACHE, Role.CDN_AMP),
        out(AMP_CACHE, status=500),
        Verdict.BROKEN,
        WRN,
        "AMP cache: HTTP 500",
    ),
    Case(
        "amp-to-origin-301",
        page(AMP_CACHE, Role.CDN_AMP),
        out(AMP_CACHE, status=200, final_url=URL, redirects=hops(301, url=AMP_CACHE)),
        Verdict.AMP_NOT_CACHED,
        IGN,
        "AMP cache: not cached, redirects to the origin (301): https://news.example.com/a",
    ),
    Case(
        "amp-to-origin-302",
        page(AMP_CACHE, Role.CDN_AMP),
        out(AMP_CACHE, status=200, final_url=URL, redirects=hops(302, url=AMP_CACHE)),
        Verdict.AMP_NOT_CACHED,
        IGN,
        "AMP cache: not cached, redirects to the origin (302)",
    ),
    Case(
        "amp-within-cache",
        page(AMP_CACHE, Role.CDN_AMP),
        out(AMP_CACHE, status=200, final_url=AMP_CACHE + "/", redirects=hops(302, url=AMP_CACHE)),
        Verdict.REDIRECTED,
        IGN,
        "temporary redirect (302)",
    ),
    Case(
        "amp-and-web-most-severe",
        page(AMP_CACHE, Role.CDN_AMP, Role.WEB),
        out(AMP_CACHE, status=404),
        Verdict.BROKEN,
        ERR,
        "AMP cache",
    ),
    Case(
        "role-override",
        page(URL, Role.BODY_LINK),
        out(status=404),
        Verdict.BROKEN,
        IGN,
        "HTTP 404",
        VerdictPolicy(roles={Role.BODY_LINK: {Verdict.BROKEN: Severity.IGNORE}}),
    ),
    Case(
        "role-override-other-role-wins",
        page(URL, Role.BODY_LINK, Role.ORIGINAL),
        out(status=404),
        Verdict.BROKEN,
        ERR,
        "HTTP 404",
        VerdictPolicy(roles={Role.BODY_LINK: {Verdict.BROKEN: Severity.IGNORE}}),
    ),
    Case(
        "role-override-raises",
        page(URL, Role.ORIGINAL, Role.WEB),
        out(failure=FetchFailure.TIMEOUT),
        Verdict.TIMEOUT,
        ERR,
        "timed out",
        VerdictPolicy(roles={Role.ORIGINAL: {Verdict.TIMEOUT: Severity.ERROR}}),
    ),
    Case(
        "host-override-wins",
        page(URL, Role.ORIGINAL),
        out(status=404),
        Verdict.BROKEN,
        WRN,
        "HTTP 404",
        VerdictPolicy(
            roles={Role.ORIGINAL: {Verdict.BROKEN: Severity.ERROR}},
            hosts={"news.example.com": {Verdict.BROKEN: Severity.WARNING}},
        ),
    ),
    Case(
        "host-override-parent-domain",
        page("https://www.linkedin.com/in/x"),
        out("https://www.linkedin.com/in/x", status=999),
        Verdict.BLOCKED,
        IGN,
        "HTTP 999",
        VerdictPolicy(hosts={"LinkedIn.com": {Verdict.BLOCKED: Severity.IGNORE}}),
    ),
    Case(
        "host-override-other-verdict",
        page(),
        out(status=404),
        Verdict.BROKEN,
        ERR,
        "HTTP 404",
        VerdictPolicy(hosts={"news.example.com": {Verdict.BLOCKED: Severity.IGNORE}}),
    ),
    Case(
        "host-override-not-a-suffix-match",
        page("https://notexample.com/"),
        out("https://notexample.com/", status=404),
        Verdict.BROKEN,
        ERR,
        "HTTP 404",
        VerdictPolicy(hosts={"example.com": {Verdict.BROKEN: Severity.IGNORE}}),
    ),
    Case(
        "default-severity-table-override",
        page(),
        out(status=429),
        Verdict.RATE_LIMITED,
        ERR,
        "429",
        VerdictPolicy(severity={Verdict.RATE_LIMITED: Severity.ERROR}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classify_table(case: Case) -> None:
    """Each recorded fact pattern maps to its documented verdict, severity and reason."""
    judgement = classify(case.target, case.outcome, case.policy)
    assert (judgement.verdict, judgement.severity) == (case.verdict, case.severity)
    assert case.reason in judgement.reason
    assert "\n" not in judgement.reason


def test_roles_argument_overrides_target_roles() -> None:
    """An explicit ``roles`` argument is used instead of the target's own roles."""
    amp = page(AMP_CACHE, Role.CDN_AMP)
    judgement = classify(amp, out(AMP_CACHE, status=404), DEFAULT, roles=frozenset({Role.WEB}))
    assert (judgement.severity, judgement.reason) == (Severity.ERROR, "HTTP 404")


def test_no_roles_uses_default_severity() -> None:
    """A target without roles is judged with the default severity table."""
    assert severity_for(Verdict.BROKEN, (), "x.org", DEFAULT) is Severity.ERROR


def test_long_failure_detail_is_truncated_to_one_line() -> None:
    """A long multi-line failure detail becomes a bounded one-line reason."""
    judgement = classify(page(), out(failure=FetchFailure.PROTOCOL, failure_detail="x\n" * 500), DEFAULT)
    assert "\n" not in judgement.reason and len(judgement.reason) < 260


SIZE = [
    ("exact", Size(840, 473), Size(840, 473), 0, 0.01, SizeCheck.MATCH),
    ("within-tolerance", Size(840, 473), Size(842, 471), 2, 0.01, SizeCheck.MATCH),
    ("outside-tolerance-same-ratio", Size(800, 400), Size(803, 400), 2, 0.0, SizeCheck.SIZE_MISMATCH),
    ("real-scaled", Size(840, 473), Size(1280, 720), 0, 0.01, SizeCheck.SCALED),
    ("half-size", Size(640, 360), Size(1280, 720), 0, 0.0, SizeCheck.SCALED),
    ("distorted", Size(1200, 630), Size(1280, 720), 0, 0.01, SizeCheck.SIZE_MISMATCH),
    ("swapped-axes", Size(720, 1280), Size(1280, 720), 0, 0.01, SizeCheck.SIZE_MISMATCH),
    ("loose-aspect", Size(1200, 630), Size(1280, 720), 0, 0.1, SizeCheck.SCALED),
    ("no-declared", None, Size(1280, 720), 0, 0.01, SizeCheck.UNKNOWN),
    ("no-actual", Size(840, 473), None, 0, 0.01, SizeCheck.UNKNOWN),
    ("zero-declared", Size(0, 473), Size(1280, 720), 0, 0.01, SizeCheck.UNKNOWN),
    ("zero-actual", Size(840, 473), Size(1280, 0), 0, 0.01, SizeCheck.UNKNOWN),
]


@pytest.mark.parametrize(
    ("declared", "actual", "tol", "aspect", "expected"), [c[1:] for c in SIZE], ids=[c[0] for c in SIZE]
)
def test_size_check_table(
    declared: Size | None, actual: Size | None, tol: int, aspect: float, expected: SizeCheck
) -> None:
    """Declared versus actual sizes compare as match, scaled, mismatch or unknown."""
    assert size_check(declared, actual, ImageSettings(tolerance_px=tol, aspect_tolerance=aspect)) is expected


def test_size_check_is_symmetric() -> None:
    """Swapping declared and actual never changes the outcome."""
    settings = ImageSettings()
    for _, declared, actual, *_ in SIZE:
        assert size_check(declared, actual, settings) is size_check(actual, declared, settings)
