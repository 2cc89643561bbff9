"""Judgement: recorded fetch facts plus policy in, (Verdict, Severity, one-line reason) out.

Pure functions only, so the same stored facts always give the same judgement and a policy
change can be replayed over history. The vocabulary (README: "Verdicts"):

* ``ok`` — final answer 2xx (or a code listed in ``accept_statuses``) without redirects; a
  304 Not Modified counts as ok ("not modified since last check"): the caller, who knows the
  previous facts, may instead carry the previous verdict forward.
* ``redirected`` — works, via temporary redirects only (302/303/307).
* ``moved_permanently`` — works, but a 301/308 occurs somewhere in the chain: the link should
  be updated to the final URL, which the reason names.
* ``soft_404`` — a redirect that lands where a removed page lands: the site root, a section or
  index page far shorter than the original path, or a path holding a "not found" marker
  (``Soft404Rules``; a redirect to a longer or sibling path stays a redirect); or, on a host
  whose made-up URLs answer 200 (the outcome carries that ``SoftBaseline``), a page whose body
  is near-identical to that answer (``pagesim.similarity`` at least ``similarity``) and whose
  title does not clearly differ from it.
* ``amp_retired`` — works: an ``ampWebUrl`` with an AMP marker that redirects to a page of its
  site without one (the publisher dropped AMP); informational, not a link to update.
* ``amp_not_cached`` — a ``cdnAmpWebUrl`` (and nothing else) that answers 404 or redirects to
  the origin: the cache holds no copy; informational.
* ``title_mismatch`` — works (would be ``ok`` or ``redirected``), but the page body was read
  (a soft-404 host's page, a GET fallback) and neither its ``<title>`` nor its ``og:title`` is
  like any title the article gives the URL (``pagesim.title_similarity`` below
  ``title.threshold``): the link may now point at other content (title drift).
* ``broken`` — a 4xx/5xx after retries (other than those below), a final 3xx that could not
  be followed, a redirect loop, too many hops, a redirect to another scheme, an oversized answer.
* ``timeout`` / ``unreachable`` — no answer in time / no answer at all (DNS, refused or reset
  connection, TLS or protocol error).
* ``rate_limited`` — still 429 after retries.
* ``blocked`` — bot protection rather than a dead link; see ``BLOCK_MARKERS``.
* ``not_image`` / ``image_unreadable`` — an image target whose bytes are not an image / could
  not be decoded far enough to learn the size.
* ``invalid_url`` — the URL cannot be fetched as written.
* ``skipped`` — the SSRF guard refused the address; by policy, not a finding about the link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from monitor.config import ImageSettings
from monitor.pagesim import similarity, title_similarity
from monitor.policy import DEFAULT_SEVERITY, Soft404Rules, VerdictPolicy
from monitor.types import (
    FetchFailure,
    FetchOutcome,
    Judgement,
    Role,
    Severity,
    Size,
    SizeCheck,
    Target,
    TargetKind,
    Verdict,
)

PERMANENT_REDIRECTS = frozenset({301, 308})
BLOCK_STATUS = 999  # LinkedIn and a few others answer bots with this non-standard code
CHALLENGE_STATUSES = frozenset({401, 403, 503})

# Bot-protection markers, deliberately conservative: each is a header a protection vendor sets
# only on its own challenge/deny answers, never on ordinary pages. A marker counts only on a
# status in CHALLENGE_STATUSES (Akamai's only on 403, AWS WAF's also on 405); a plain
# 401/403 without one is broken.
# ``server: cloudflare`` alone does NOT count: Cloudflare fronts millions of origins whose own
# 403s pass through it unchanged. fetch.py must keep these headers (lower-cased) in
# ``FetchOutcome.headers``.
BLOCK_MARKERS: dict[str, str] = {
    "cf-mitigated": "Cloudflare challenge",  # only when the value is "challenge"
    "x-datadome": "DataDome",
    "x-dd-b": "DataDome",
    "x-amzn-waf-action": "AWS WAF",
    "akamai-grn": "Akamai",  # only with 403
}
BLOCK_HEADERS = frozenset(BLOCK_MARKERS)
# Markers that count on other statuses than CHALLENGE_STATUSES (AWS WAF's CAPTCHA answers 405).
_MARKER_STATUSES = {"akamai-grn": frozenset({403}), "x-amzn-waf-action": frozenset({403, 405})}
# Interstitials known by ``server`` plus the page title (fetch reads the title of such error
# pages): (server substring, statuses, lower-cased title prefix, vendor).
BLOCK_PAGES: tuple[tuple[str, frozenset[int], str, str], ...] = (
    ("cloudflare", frozenset({403, 503}), "just a moment", "Cloudflare challenge page"),
    ("cloudflare", frozenset({403, 503}), "attention required! | cloudflare", "Cloudflare block page"),
    ("akamaighost", frozenset({403}), "access denied", "Akamai"),
)

_UNREACHABLE = {
    FetchFailure.DNS: "DNS lookup failed",
    FetchFailure.CONNECT: "connection failed",
    FetchFailure.RESET: "connection reset",
    FetchFailure.TLS: "TLS error",
    FetchFailure.PROTOCOL: "HTTP protocol error",
}
_BROKEN_FAILURES = {
    FetchFailure.TOO_MANY_REDIRECTS: "too many redirects",
    FetchFailure.REDIRECT_LOOP: "redirect loop",
    FetchFailure.BAD_REDIRECT: "bad redirect (other scheme or unusable Location)",
    FetchFailure.TOO_LARGE: "answer too large",
}
_ROOT_PAGES = frozenset({"", "index", "home", "default", "start"})  # stems of a site's front page
_EXTENSION = re.compile(r"\.(s?html?|php\d?|aspx?|jsp|cfm)$", re.IGNORECASE)
_RANK = {Severity.IGNORE: 0, Severity.WARNING: 1, Severity.ERROR: 2}
_SPACE = re.compile(r"\s+")
_TITLE_CHECKED = frozenset({Verdict.OK, Verdict.REDIRECTED})  # a working page: its title may have drifted


def classify(
    target: Target,
    outcome: FetchOutcome,
    policy: VerdictPolicy,
    roles: frozenset[Role] | None = None,
    titles: Sequence[str] = (),
) -> Judgement:
    """Judge one fetched target; ``roles`` defaults to ``target.roles`` and only shapes severity/reason.

    ``titles``: what the articles title the URL's page (its item's frontmatter ``title``).
    """
    used = target.roles if roles is None else roles
    verdict, reason = _verdict(target, outcome, policy, used)
    if titles and verdict in _TITLE_CHECKED and policy.title.enabled and target.kind is TargetKind.PAGE:
        drift = title_drift(titles, (outcome.title, outcome.og_title), policy.title.threshold)
        if drift:
            verdict, reason = Verdict.TITLE_MISMATCH, drift
    return Judgement(verdict, severity_for(verdict, used, target.host, policy), reason)


def title_drift(expected: Sequence[str], found: Iterable[str | None], threshold: float) -> str | None:
    """Why the page's titles (``<title>``, ``og:title``) match none of the ``expected`` ones, or None.

    None too when the page showed no title: nothing to compare is no mismatch.
    """
    best: tuple[float, str, str] | None = None
    for page in found:
        for want in expected:
            score = title_similarity(page, want) if page else None
            if score is not None and (best is None or score > best[0]):
                best = (score, page or "", want)
    if best is None or best[0] >= threshold:
        return None
    score, page, want = best
    return f"page title {_quote(page)} does not match the article's {_quote(want)} (similarity {score:.2f})"


def _quote(title: str) -> str:
    flat = _SPACE.sub(" ", title).strip()
    return "'" + (flat if len(flat) <= 120 else flat[:119] + "…") + "'"


def severity_for(verdict: Verdict, roles: Iterable[Role], host: str, policy: VerdictPolicy) -> Severity:
    """Most severe over the roles (each its override or the default), then a host override wins.

    A URL used in several places matters as much as its most important use. Host overrides
    match the host or its nearest listed parent domain (``linkedin.com`` covers ``www.``).
    """
    default = policy.severity.get(verdict, DEFAULT_SEVERITY[verdict])
    per_role = [policy.roles.get(role, {}).get(verdict, default) for role in roles]
    severity = max(per_role, key=_RANK.__getitem__) if per_role else default
    host_rules = _host_rules(host, policy.hosts)
    return host_rules.get(verdict, severity) if host_rules else severity


def _host_rules(host: str, hosts: Mapping[str, dict[Verdict, Severity]]) -> dict[Verdict, Severity] | None:
    if not hosts:
        return None
    name = host.lower().rstrip(".")
    lowered = {key.lower().rstrip("."): value for key, value in hosts.items()}
    while name:
        if name in lowered:
            return lowered[name]
        _, _, name = name.partition(".")
    return None


def _verdict(
    target: Target, outcome: FetchOutcome, policy: VerdictPolicy, roles: frozenset[Role]
) -> tuple[Verdict, str]:
    if outcome.failure is not None:
        return _from_failure(outcome.failure, outcome)
    if outcome.not_modified or outcome.status == 304:
        return Verdict.OK, "not modified since last check"
    status = outcome.status
    if status is None:
        return Verdict.UNREACHABLE, "no HTTP answer recorded"
    amp = Role.CDN_AMP in roles
    cache_only = roles == {Role.CDN_AMP}
    accepted = status in policy.accept_statuses
    if not accepted:
        blocked = _blocked_by(status, outcome.headers, outcome.title)
        if blocked:
            return Verdict.BLOCKED, f"bot protection ({blocked}, HTTP {status})"
        if status == 429:
            return Verdict.RATE_LIMITED, f"still rate limited (HTTP 429) after {_tries(outcome.attempts)}"
        if status >= 400:
            tries = f" after {_tries(outcome.attempts)}" if outcome.attempts > 1 else ""
            if cache_only and status == 404:
                return Verdict.AMP_NOT_CACHED, f"AMP cache: not cached (HTTP 404){tries}"
            if amp and status == 404:
                return Verdict.BROKEN, f"AMP cache: not cached (HTTP 404){tries}"
            prefix = "AMP cache: " if amp else ""
            return Verdict.BROKEN, f"{prefix}HTTP {status}{tries}"
        if not 200 <= status < 300:
            return Verdict.BROKEN, f"HTTP {status} with no redirect to follow"
    image = _image_problem(outcome)
    if image:
        return image
    return _redirects(target, outcome, status, roles, policy)


def _from_failure(failure: FetchFailure, outcome: FetchOutcome) -> tuple[Verdict, str]:
    detail = _detail(outcome.failure_detail)
    if failure is FetchFailure.TIMEOUT:
        return Verdict.TIMEOUT, f"timed out after {_tries(outcome.attempts)}{detail}"
    if failure is FetchFailure.INVALID_URL:
        return Verdict.INVALID_URL, f"invalid URL{detail}"
    if failure is FetchFailure.BLOCKED_ADDRESS:
        return Verdict.SKIPPED, f"skipped: address not allowed by the safety policy{detail}"
    if failure in _UNREACHABLE:
        return Verdict.UNREACHABLE, f"{_UNREACHABLE[failure]}{detail}"
    return Verdict.BROKEN, f"{_BROKEN_FAILURES.get(failure, str(failure))}{detail}"


def _blocked_by(status: int, headers: Mapping[str, str], title: str | None) -> str | None:
    """The vendor whose challenge this answer is, or None for an ordinary answer."""
    if status == BLOCK_STATUS:
        return "HTTP 999"
    lowered = {key.lower(): value for key, value in headers.items()}
    server, heading = lowered.get("server", "").lower(), (title or "").lower()
    for name, statuses, prefix, vendor in BLOCK_PAGES:
        if name in server and status in statuses and heading.startswith(prefix):
            return vendor
    for name, vendor in BLOCK_MARKERS.items():
        if name not in lowered or status not in _MARKER_STATUSES.get(name, CHALLENGE_STATUSES):
            continue
        if name == "cf-mitigated" and lowered[name].strip().lower() != "challenge":
            continue
        return vendor
    return None


def _image_problem(outcome: FetchOutcome) -> tuple[Verdict, str] | None:
    facts = outcome.image
    if facts is None or facts.error is None:
        return None
    detail = _detail(facts.detail)
    if facts.error == "not_image":
        kind = f" ({outcome.content_type})" if outcome.content_type else ""
        return Verdict.NOT_IMAGE, f"not an image{kind}{detail}"
    return Verdict.IMAGE_UNREADABLE, f"image unreadable{detail}"


def _redirects(
    target: Target, outcome: FetchOutcome, status: int, roles: frozenset[Role], policy: VerdictPolicy
) -> tuple[Verdict, str]:
    hops = [hop for hop in outcome.redirects if 300 <= hop.status < 400]
    final = outcome.final_url or outcome.url
    if not hops:  # no redirect answered (a remapped URL's final_url differs without one)
        missing = _like_missing(target, outcome, policy)
        if missing:
            return Verdict.SOFT_404, missing
        accepted = "" if 200 <= status < 300 else " (accepted by policy)"
        return Verdict.OK, f"HTTP {status}{accepted}"
    codes = "/".join(dict.fromkeys(str(hop.status) for hop in hops)) or "redirect"
    to_origin = Role.CDN_AMP in roles and _host(final) != _host(target.url)
    if to_origin and roles == {Role.CDN_AMP}:
        return Verdict.AMP_NOT_CACHED, f"AMP cache: not cached, redirects to the origin ({codes}): {final}"
    if target.kind is TargetKind.PAGE and not to_origin:
        rules = policy.soft_404.for_host(target.host)
        evidence = soft_404_evidence(target.url, final, rules) if rules.enabled else None
        evidence = evidence or _like_missing(target, outcome, policy)
        if evidence:
            return Verdict.SOFT_404, f"{evidence} ({codes}): {final}"
    if Role.AMP in roles and amp_retired(target.url, final):
        return Verdict.AMP_RETIRED, f"AMP retired: redirects to the non-AMP page ({codes}): {final}"
    if any(hop.status in PERMANENT_REDIRECTS for hop in hops):
        if to_origin:
            return Verdict.MOVED_PERMANENTLY, f"AMP cache redirects to the origin ({codes}): {final}"
        return Verdict.MOVED_PERMANENTLY, f"moved permanently ({codes}); update the link to {final}"
    if to_origin:
        return Verdict.REDIRECTED, f"AMP cache redirects to the origin ({codes}): {final}"
    return Verdict.REDIRECTED, f"temporary redirect ({codes}) to {final}"


SAME_TITLE = 0.5  # a page whose title shares less than this with the baseline's is a real page


def _like_missing(target: Target, outcome: FetchOutcome, policy: VerdictPolicy) -> str | None:
    """Evidence that a page is its host's "not found" template (``outcome.baseline``), or None."""
    base = outcome.baseline
    if base is None or not base.soft or target.kind is not TargetKind.PAGE:
        return None
    rules = policy.soft_404.for_host(target.host)
    if not (rules.enabled and rules.probe):
        return None
    score = similarity(outcome.body_print, base.fingerprint)
    if score is None or score < rules.similarity:
        return None
    if outcome.title and base.title:
        titles = title_similarity(outcome.title, base.title)
        if titles is not None and titles < SAME_TITLE:
            return None
    return f"same page as a made-up URL on this host (similarity {int(score * 100) / 100:.2f})"


def soft_404_evidence(original: str, final: str, rules: Soft404Rules) -> str | None:
    """Why a redirect from ``original`` to ``final`` looks like a removed page, or None.

    The rules run in order (root, marker, section) and the first that holds is the evidence.
    Never a soft 404: an original that is itself a front page, a redirect that carries the
    original path in its query (a login or consent gate), or one that keeps the original's last
    path segment (a story moved under a new path). A final query naming a page (``/?p=123``)
    rules out root and section; the section rule needs the same site (``www.`` aside).
    """
    try:
        src, dst = urlsplit(original), urlsplit(final)
        hosts = (src.hostname or "").removeprefix("www."), (dst.hostname or "").removeprefix("www.")
    except ValueError:
        return None
    before, after = _segments(src.path), _segments(dst.path)
    if _is_root(before) or unquote(src.path).rstrip("/") in unquote(dst.query):
        return None
    slug = next((part for part in reversed(before) if part.lower() != "amp"), before[-1]).lower()
    if slug in (part.lower() for part in after):
        return None
    query = parse_qsl(dst.query, keep_blank_values=True)
    markers = {marker.lower() for marker in rules.markers}
    had = {_stem(part) for part in before}
    if any(_stem(part) in markers - had for part in after) or any(
        key.lower() in markers or value.lower() in markers for key, value in query
    ):
        return "redirects to a not-found page"
    if any(not key.lower().startswith("utm_") for key, _ in query):
        return None
    if _is_root(after):
        return "redirects to the site root" if rules.root else None
    shorter = len("/".join(after)) <= rules.section_ratio * len("/".join(before))
    if hosts[0] == hosts[1] and len(after) < len(before) and shorter:
        return "redirects to a much shorter section or index page"
    return None


def amp_retired(original: str, final: str) -> bool:
    """Whether an AMP URL (one with an AMP marker) redirects to a page of the same site (``www.``/``amp.``
    aside) without one: the publisher dropped AMP. An ampWebUrl without a marker proves nothing."""
    try:
        src, dst = urlsplit(original), urlsplit(final)
        same = _site(src.hostname) == _site(dst.hostname)
    except ValueError:
        return False
    if not same or _is_root(_segments(dst.path)):
        return False
    was_amp = _has_amp_marker(src.hostname or "", src.path, src.query)
    return was_amp and not _has_amp_marker(dst.hostname or "", dst.path, dst.query)


def _site(host: str | None) -> str:
    name = (host or "").lower()
    for prefix in ("www.", "amp."):
        name = name.removeprefix(prefix)
    return name


def _has_amp_marker(host: str, path: str, query: str) -> bool:
    """``amp.`` host, an ``amp`` path segment or ``.amp`` suffix, or an ``amp`` query key or value."""
    if host.lower().startswith("amp."):
        return True
    if any(part.lower() == "amp" or ".amp" in part.lower() for part in _segments(path)):
        return True
    return any(key.lower() == "amp" or value.lower() == "amp" for key, value in parse_qsl(query, True))


def _segments(path: str) -> list[str]:
    return [part for part in unquote(path).split("/") if part]


def _is_root(segments: list[str]) -> bool:
    return not segments or (len(segments) == 1 and _stem(segments[0]) in _ROOT_PAGES)


def _stem(segment: str) -> str:
    return _EXTENSION.sub("", segment).lower()


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _tries(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _detail(text: str) -> str:
    """Failure detail as a short single-line suffix (reasons are one line)."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) > 200:
        flat = flat[:199] + "…"
    return f": {flat}" if flat else ""


def size_check(declared: Size | None, actual: Size | None, images: ImageSettings) -> SizeCheck:
    """Compare the size an article declares for an image with its real displayed size.

    ``match``: both sides within ``tolerance_px``. ``scaled``: the aspect ratios agree within
    ``aspect_tolerance`` (relative to the larger ratio), so the browser scales without
    distortion. ``size_mismatch``: the image would be distorted or cropped. ``unknown``: a side
    is missing or has a zero/negative dimension.
    """
    if declared is None or actual is None:
        return SizeCheck.UNKNOWN
    if min(declared.width, declared.height, actual.width, actual.height) <= 0:
        return SizeCheck.UNKNOWN
    tol = images.tolerance_px
    if abs(declared.width - actual.width) <= tol and abs(declared.height - actual.height) <= tol:
        return SizeCheck.MATCH
    want = declared.width / declared.height
    have = actual.width / actual.height
    if abs(want - have) / max(want, have) <= images.aspect_tolerance:
        return SizeCheck.SCALED
    return SizeCheck.SIZE_MISMATCH
