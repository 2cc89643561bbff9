"""URL hygiene: normalisation, host keys, redaction and Google AMP cache URL derivation.

Everything here is pure and cheap (it runs on every URL of the corpus): one call into the
WHATWG URL parser (``ada_url``, C++), plain string operations, precompiled regexes and only
small bounded caches. Bad input never raises; it becomes an ``InvalidUrl`` naming the reason.

The normal form is what a browser makes of the URL (the WHATWG URL standard), with our rules
on top (``normalise_url``; host rules in ``monitor.hostnames``). httpx keeps that spelling, so
the normalised URL is both the deduplication key and the request target, as a browser sends it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import string
from dataclasses import dataclass
from urllib.parse import unquote

from ada_url import normalize_url

from monitor.hostnames import authority_problem, host_problem, short, strip_trailing_dot, to_ascii

__all__ = [
    "DEFAULT_AMP_CACHE_TEMPLATE",
    "SECRET_PARAMS",
    "InvalidUrl",
    "amp_cache_matches",
    "amp_cache_subdomain",
    "amp_cache_url",
    "host_key",
    "normalise_url",
    "redact_url",
    "validate_amp_template",
]


@dataclass(frozen=True, slots=True)
class InvalidUrl:
    """Why a text is not a checkable http(s) URL."""

    reason: str

    def __str__(self) -> str:
        return self.reason


_DEFAULT_PORTS = {"http": "80", "https": "443"}

# What the WHATWG parser strips around a URL (C0 controls and space) and removes inside it.
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile("[\t\n\r]")
_SURROGATES = re.compile("[\ud800-\udfff]")  # cannot be UTF-8 encoded, so cannot be percent-encoded
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# After "http:", a browser reads any two of '/' and '\' as the start of the authority.
_TWO_SLASHES = frozenset({"//", "\\\\", "/\\", "\\/"})


try:  # ada's C API through the binding's own cffi module: a third of the CPU of its parse_url()
    from ada_url._ada_wrapper import ffi as _ffi
    from ada_url._ada_wrapper import lib as _lib
except ImportError:  # pragma: no cover - a binding that moved its internals: the public call
    _lib = None


def whatwg_href(text: str) -> str:
    """The WHATWG ``href`` of an absolute URL; ValueError when it does not parse."""
    if _lib is None:  # pragma: no cover
        return normalize_url(text)
    data = text.encode("utf-8")
    parsed = _lib.ada_parse(data, len(data))
    try:
        if not _lib.ada_is_valid(parsed):
            raise ValueError("invalid URL")
        href = _lib.ada_get_href(parsed)
        href_text: str = _ffi.unpack(href.data, href.length).decode("utf-8")
        return href_text
    finally:
        _lib.ada_free(parsed)


def _scheme_of(text: str) -> tuple[str, int] | InvalidUrl:
    """(scheme, index after "scheme:") of an absolute http(s) URL written with '//' (or '\\')."""
    match = _SCHEME.match(text)
    if match is None:
        if text[:2] in _TWO_SLASHES:
            return InvalidUrl("scheme-relative URL: an article field has no base URL to take the scheme from")
        return InvalidUrl("relative URL" if text[0] in "/\\.?#" else "no scheme")
    scheme = match.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        if "." in scheme or scheme == "localhost":
            return InvalidUrl("no scheme")  # "example.com:8080/x" parses as scheme "example.com"
        return InvalidUrl(f"unsupported scheme {short(scheme)}")
    if text[match.end() : match.end() + 2] not in _TWO_SLASHES:
        # "https:example.com" is relative to the page it is on; an article field has no page
        return InvalidUrl(f"missing '//' after '{scheme}:'")
    return scheme, match.end()


def normalise_url(raw: object, *, max_length: int = 2048) -> str | InvalidUrl:
    """The canonical http(s) form of ``raw``, or why it cannot be checked.

    Canonical means what a browser's address bar makes of it (the WHATWG URL standard: the
    ``href`` of ``new URL(raw)``), then our rules: no fragment, one trailing dot of the host
    dropped, ``xn--`` labels valid punycode, and an absolute ``http(s)://`` form required (no
    scheme-relative ``//host`` or ``https:host``, since an article field has no base URL).
    So: lowercase scheme and host, UTS #46 host, dotted IPv4 for every numeric spelling, no
    default port, path at least "/", no dot segments, '\\' read as '/', tabs and newlines
    removed, spaces and non-ASCII percent-encoded, existing escapes (and a stray '%') kept.
    Idempotent: normalising the output returns it unchanged.
    """
    if not isinstance(raw, str):
        return InvalidUrl("not a string")
    text = raw if raw and raw[0] > " " and raw[-1] > " " else raw.strip(_C0_AND_SPACE)
    if not text:
        return InvalidUrl("empty")
    if len(text) > max_length:
        return InvalidUrl(f"longer than {max_length} characters")
    # isprintable() is the fast path: False for tabs, newlines, controls and surrogates.
    if not text.isprintable():
        if _SURROGATES.search(text) is not None:
            return InvalidUrl("not valid Unicode (lone surrogate)")
        text = _TAB_OR_NEWLINE.sub("", text)
    if text.startswith("https://"):  # fast paths for the spellings nearly every URL uses
        scheme, after = "https", 6
    elif text.startswith("http://"):
        scheme, after = "http", 5
    else:
        scheme_at = _scheme_of(text)
        if isinstance(scheme_at, InvalidUrl):
            return scheme_at
        scheme, after = scheme_at
    try:
        url = whatwg_href(text)
    except ValueError:
        return InvalidUrl(authority_problem(text[after:]))
    if "#" in url:
        url = url[: url.index("#")]
    # Host rules, on a rare path: an "xn--" label, or a '.' ending the host (before ':' or '/').
    if "xn--" in url or ".:" in url or "./" in url:
        start = len(scheme) + 3
        end = url.find("/", start)  # a special URL's path always starts with '/'
        userinfo, at, hostport = url[start:end].rpartition("@")  # '@' in userinfo is escaped
        host, colon, port = hostport.partition(":")  # no IPv6 literal ends in '.' or holds "xn--"
        if "xn--" in host:
            problem = host_problem(host)
            if problem is not None:
                return InvalidUrl(problem)
        if host.endswith("."):
            trimmed = strip_trailing_dot(host)
            url = f"{scheme}://{userinfo}{at}{trimmed}{colon}{port}{url[end:]}"
    if len(url) > max_length:
        return InvalidUrl(f"longer than {max_length} characters")
    return url


def _authority_of(url: str) -> tuple[str, str, str]:
    """(scheme, authority, tail) of a URL by plain string splitting; empty parts if absent."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    end = len(rest)
    for delimiter in "/?#":
        position = rest.find(delimiter, 0, end)
        if position >= 0:
            end = position
    return scheme, rest[:end], rest[end:]


def host_key(url: str) -> str:
    """``host`` or ``host:port`` (non-default port) of a URL: the key of per-host politeness."""
    scheme, authority, _ = _authority_of(url)
    hostport = authority.rpartition("@")[2].lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default is not None and hostport.endswith(":" + default):
        hostport = hostport[: -len(default) - 1]
    return hostport


# The one list of secret-looking parameter names: redact_url masks their values in URLs it
# shows, and monitor.logs masks them in any log text (``?name=`` and ``&name=``).
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "auth",
        "credential",
        "credentials",
        "x-amz-signature",
        "x-amz-security-token",
        "x-goog-signature",
    }
)
_SECRET_SUFFIXES = ("token", "secret", "password", "signature", "apikey", "credential")
_NAME_SEPARATORS = re.compile(r"[-_.\[\]]+")


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    lowered = unquote(name).lower()
    if lowered in SECRET_PARAMS or lowered.endswith(_SECRET_SUFFIXES):
        return True
    return any(part in SECRET_PARAMS for part in _NAME_SEPARATORS.split(lowered))


def _redact_params(params: str) -> str:
    if "=" not in params:
        return params
    pieces = []
    for piece in params.split("&"):
        name, eq, value = piece.partition("=")
        pieces.append(f"{name}=***" if eq and value and _is_secret_name(name) else piece)
    return "&".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with credentials hidden: userinfo becomes ``***`` and secret-looking
    query (and fragment, e.g. OAuth ``#access_token=``) values become ``***``."""
    if "@" not in url and "=" not in url:
        return url  # no userinfo and no name=value pair: nothing to hide (most URLs, fast)
    scheme, authority, tail = _authority_of(url)
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    tail, hash_sign, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    prefix = f"{scheme}://{authority}" if scheme or authority else ""
    return "".join((prefix, path, question, _redact_params(query), hash_sign, _redact_params(fragment)))


# --- Google AMP cache -------------------------------------------------------------------

DEFAULT_AMP_CACHE_TEMPLATE = "https://{subdomain}.cdn.ampproject.org/c/{s}{host}{path}"
_TEMPLATE_FIELDS = frozenset({"subdomain", "s", "host", "path"})
_REQUIRED_FIELDS = (
    "path",
)  # a single-origin cache (https://cache.example/c/s/{host}{path}) needs no {subdomain}
_MAX_LABEL = 63
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
# Character classes of the reference implementation (amp-toolbox cache-url); a domain
# mixing both directions is not eligible for the human-readable form.
_LTR = re.compile(
    "[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02b8\u0300-\u0590\u0800-\u1fff"
    "\u200e\u2c00-\ufb1c\ufe00-\ufe6f\ufefd-\uffff]"
)
_RTL = re.compile("[\u0591-\u06ef\u06fa-\u07ff\u200f\ufb1d-\ufdff\ufe70-\ufefc]")


def _has_hyphen34(label: str) -> bool:
    """'--' at positions 3-4 is reserved for IDNA ('xn--') and may not appear otherwise."""
    return label[2:4] == "--" and not label.startswith("xn")


def _fallback_subdomain(ascii_host: str) -> str:
    digest = hashlib.sha256(ascii_host.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower().rstrip("=")


def _to_unicode(ascii_host: str) -> str:
    """Punycode-decode each ``xn--`` label (raises UnicodeError on bad punycode)."""
    return ".".join(
        label[4:].encode("ascii").decode("punycode") if label.startswith("xn--") else label
        for label in ascii_host.split(".")
    )


def _human_readable_subdomain(ascii_host: str) -> str | None:
    """The readable cache label, or None when the hashed fallback applies."""
    if (
        "." not in ascii_host
        or len(ascii_host) > _MAX_LABEL
        or not ascii_host.isascii()
        or _has_hyphen34(ascii_host)
    ):
        return None
    try:
        unicode_host = _to_unicode(ascii_host)
    except (UnicodeError, ValueError):
        return None
    if _LTR.search(unicode_host) and _RTL.search(unicode_host):
        return None
    label = unicode_host.replace("-", "--").replace(".", "-")
    if not label.isascii():
        try:
            label = "xn--" + label.encode("punycode").decode("ascii")
        except UnicodeError:
            return None
    label = label.lower()
    if _has_hyphen34(label):
        label = f"0-{label}-0"
    if _DNS_LABEL.fullmatch(label) is None or _has_hyphen34(label):
        return None  # too long, characters (e.g. '_') a DNS label cannot carry, or a host starting "-"
    return label


def amp_cache_subdomain(host: str) -> str:
    """The Google AMP cache subdomain for a host (no port), as amp-toolbox computes it.

    Readable form: punycode-decode, '-' → '--', '.' → '-', punycode-encode, and wrap as
    ``0-…-0`` when '--' lands at positions 3-4. Hosts without a dot, over 63 characters,
    mixing LTR and RTL scripts, or yielding an invalid DNS label get the lowercase
    unpadded Base32 of SHA-256 of the ASCII host instead.
    """
    ascii_host = host.lower()
    if not ascii_host.isascii():
        encoded = to_ascii(ascii_host)
        if encoded is None:
            return _fallback_subdomain(ascii_host)
        ascii_host = encoded
    return _human_readable_subdomain(ascii_host) or _fallback_subdomain(ascii_host)


def validate_amp_template(template: str) -> str | None:
    """An error message when ``template`` cannot build cache URLs, else None."""
    if not isinstance(template, str):
        return "template must be a string"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"malformed template: {exc}"
    names: set[str] = set()
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in _TEMPLATE_FIELDS:
            allowed = ", ".join("{" + field + "}" for field in sorted(_TEMPLATE_FIELDS))
            return f"unknown placeholder {{{name}}} (allowed: {allowed})"
        if spec or conversion:
            return f"placeholder {{{name}}} must not carry a conversion or format spec"
        names.add(name)
    missing = [name for name in _REQUIRED_FIELDS if name not in names]
    if missing:
        return "template lacks " + " and ".join("{" + name + "}" for name in missing)
    sample = normalise_url(template.format(subdomain="example-com", s="s/", host="example.com", path="/p"))
    if isinstance(sample, InvalidUrl):
        return f"template does not produce a valid URL: {sample.reason}"
    return None


def amp_cache_url(amp_url: str, template: str = DEFAULT_AMP_CACHE_TEMPLATE) -> str | InvalidUrl:
    """The normalised AMP cache URL that serves ``amp_url``, or why none can be derived."""
    error = validate_amp_template(template)
    if error is not None:
        return InvalidUrl(f"invalid AMP cache template: {error}")
    normal = normalise_url(amp_url)
    if isinstance(normal, InvalidUrl):
        return normal
    scheme, authority, tail = _authority_of(normal)
    hostport = authority.rpartition("@")[2]
    # Normalised, so an IPv6 literal is "[...]" and anything after its ']' is the port.
    hostname = hostport[: hostport.find("]") + 1] if hostport.startswith("[") else hostport.partition(":")[0]
    path, _, query = tail.partition("?")
    cache_url = template.format(
        subdomain=amp_cache_subdomain(hostname),
        s="s/" if scheme == "https" else "",
        host=hostport,
        path=path + ("?" + query if query else ""),
    )
    return normalise_url(cache_url)


def amp_cache_matches(
    amp_url: str, cdn_url: str, template: str = DEFAULT_AMP_CACHE_TEMPLATE
) -> tuple[bool, str | None]:
    """(whether ``cdn_url`` is the cache URL of ``amp_url``, the expected cache URL or None)."""
    expected = amp_cache_url(amp_url, template)
    if isinstance(expected, InvalidUrl):
        return False, None
    actual = normalise_url(cdn_url)
    return (not isinstance(actual, InvalidUrl) and actual == expected), expected
