"""URL hygiene: normalisation, host keys, redaction and Google AMP cache URL derivation.

Everything here is pure and cheap (it runs on every URL of the corpus): plain string
operations, precompiled regexes and no growing caches. Bad input never raises; it
becomes an ``InvalidUrl`` naming the reason.

The normal form mirrors what a browser and httpx send on the wire (WHATWG percent-encode
sets), so the normalised URL is both the deduplication key and the request target.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import re
import string
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = [
    "DEFAULT_AMP_CACHE_TEMPLATE",
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
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# Whitespace (Unicode-aware) and C0/C1 controls are never part of a URL a reader can click.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")  # cannot be UTF-8 encoded, so cannot be percent-encoded
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_ASCII_HOST = re.compile(r"[a-z0-9_\-]{1,63}(?:\.[a-z0-9_\-]{1,63})*")

# Characters left as they are per component; everything else (and non-ASCII) is UTF-8
# percent-encoded. Path/query follow the WHATWG sets httpx uses, so httpx sends our form
# unchanged; userinfo follows RFC 3986.
_PATH_KEEP = r"A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]\\^|"
_QUERY_KEEP = _PATH_KEEP + r"?`{}"
_USERINFO_KEEP = r"A-Za-z0-9\-._~!$&'()*+,;=:"


def _component_patterns(keep: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A quick "needs work" detector and the rewriting pattern for one component."""
    needs_work = re.compile(rf"[^{keep}]")  # '%' is not in any keep set, so escapes are caught
    rewrite = re.compile(rf"%([0-9A-Fa-f]{{2}})|%|[^{keep}%]+")
    return needs_work, rewrite


_PATH_RE = _component_patterns(_PATH_KEEP)
_QUERY_RE = _component_patterns(_QUERY_KEEP)
_USERINFO_RE = _component_patterns(_USERINFO_KEEP)


def _rewrite(match: re.Match[str]) -> str:
    hex_pair = match.group(1)
    if hex_pair is not None:
        char = chr(int(hex_pair, 16))
        return char if char in _UNRESERVED else "%" + hex_pair.upper()
    text = match.group(0)
    if text == "%":
        # A stray '%' becomes %25; leaving it would let a later decode form a new escape
        # and break idempotence.
        return "%25"
    return "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))


def _normalise_component(text: str, patterns: tuple[re.Pattern[str], re.Pattern[str]]) -> str:
    needs_work, rewrite = patterns
    if needs_work.search(text) is None:
        return text
    return rewrite.sub(_rewrite, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for absolute paths; the fast path skips the common case."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
            continue
        output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")  # "/a/b/.." names the directory "/a/"
    return "/" + "/".join(output)


def _short(text: str) -> str:
    """Quote a piece of input in a reason without letting it grow unbounded."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _normalise_host(host: str) -> str | InvalidUrl:
    """Lowercase, IDNA-encode (IDNA2003, stdlib codec) and validate a registered name."""
    if host.isascii():
        host = host.lower()
        if len(host) <= 253 and _ASCII_HOST.fullmatch(host) is not None:
            return host
    else:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            return InvalidUrl(f"invalid host {_short(host)}: {exc}")
        host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        return InvalidUrl("missing host")
    if len(host) > 253 or _ASCII_HOST.fullmatch(host) is None:
        return InvalidUrl(f"invalid host {_short(host)}")
    return host


def _normalise_ipv6(literal: str) -> str | InvalidUrl:
    if "%" in literal:
        return InvalidUrl("IPv6 zone identifiers are not supported")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        return InvalidUrl(f"invalid IPv6 address {_short(literal)}")
    return f"[{address.compressed}]"


def _split_authority(authority: str, scheme: str) -> tuple[str, str, str] | InvalidUrl:
    """Split and normalise ``userinfo@host:port``; the default port comes back empty."""
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return InvalidUrl("unterminated IPv6 address")
        host = _normalise_ipv6(hostport[1:end])
        rest = hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return InvalidUrl(f"invalid host {_short(hostport)}")
        port = rest[1:]
    else:
        raw_host, _, port = hostport.partition(":")
        if ":" in port:
            return InvalidUrl(f"invalid port {_short(port)}")
        host = _normalise_host(raw_host)
    if isinstance(host, InvalidUrl):
        return host
    if port:
        if not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 < int(port) <= 65535:
            return InvalidUrl(f"invalid port {_short(port)}")
        port = str(int(port))  # drops leading zeros
        if port == _DEFAULT_PORTS[scheme]:
            port = ""
    if at:
        userinfo = _normalise_component(userinfo, _USERINFO_RE)
    return userinfo, host, port


def normalise_url(raw: object, *, max_length: int = 2048) -> str | InvalidUrl:
    """The canonical http(s) form of ``raw``, or why it cannot be checked.

    Canonical means: lowercase scheme and host, IDNA host without trailing dot, no default
    port, path at least "/", no dot segments, no fragment, percent-encoding with uppercase
    hex, unreserved characters decoded and non-ASCII encoded. Query order is kept.
    Idempotent: normalising the output returns it unchanged.
    """
    if not isinstance(raw, str):
        return InvalidUrl("not a string")
    text = raw.strip()
    if not text:
        return InvalidUrl("empty")
    if len(text) > max_length:
        return InvalidUrl(f"longer than {max_length} characters")
    # isprintable() is the fast path: False for every whitespace, control and surrogate character.
    if not (text.isprintable() and " " not in text):
        if _BAD_CHARS.search(text) is not None:
            return InvalidUrl("contains whitespace or control characters")
        if _SURROGATES.search(text) is not None:
            return InvalidUrl("not valid Unicode (lone surrogate)")
    if text.startswith("https://"):  # fast paths for the spellings nearly every URL uses
        scheme, rest = "https", text[8:]
    elif text.startswith("http://"):
        scheme, rest = "http", text[7:]
    elif text.startswith("//"):
        scheme, rest = "https", text[2:]
    else:
        match = _SCHEME.match(text)
        if match is None:
            return InvalidUrl("relative URL" if text[0] in "/.?#" else "no scheme")
        scheme = match.group(1).lower()
        if scheme not in _DEFAULT_PORTS:
            if "." in scheme or scheme == "localhost":
                return InvalidUrl("no scheme")  # "example.com:8080/x" parses as scheme "example.com"
            return InvalidUrl(f"unsupported scheme {_short(scheme)}")
        rest = text[match.end() :]
        if not rest.startswith("//"):
            return InvalidUrl("missing host")
        rest = rest[2:]
    hash_at = rest.find("#")
    if hash_at >= 0:
        rest = rest[:hash_at]
    end = rest.find("/")
    question_at = rest.find("?", 0, end if end >= 0 else len(rest))
    if question_at >= 0:
        end = question_at
    if end < 0:
        authority, path, question, query = rest, "/", "", ""
    else:
        authority = rest[:end]
        path, question, query = rest[end:].partition("?")
    if "@" in authority or ":" in authority or "[" in authority:
        parts = _split_authority(authority, scheme)
        if isinstance(parts, InvalidUrl):
            return parts
        userinfo, host, port = parts
    else:
        checked = _normalise_host(authority)
        if isinstance(checked, InvalidUrl):
            return checked
        userinfo, host, port = "", checked, ""
    path = _normalise_component(path, _PATH_RE) if path else "/"
    query = _normalise_component(query, _QUERY_RE)
    if "/." in path:  # a dot segment always follows a '/'
        path = _remove_dot_segments(path)
    if userinfo:
        host = userinfo + "@" + host
    if port:
        host = host + ":" + port
    url = f"{scheme}://{host}{path}{question}{query}"
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


_SECRET_NAMES = frozenset(
    {
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "password",
        "passwd",
        "pwd",
        "secret",
        "auth",
        "credential",
        "credentials",
    }
)
_SECRET_SUFFIXES = ("token", "secret", "password", "signature", "apikey", "credential")
_NAME_SEPARATORS = re.compile(r"[-_.\[\]]+")


@functools.lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    lowered = unquote(name).lower()
    if lowered in _SECRET_NAMES or lowered.endswith(_SECRET_SUFFIXES):
        return True
    return any(part in _SECRET_NAMES for part in _NAME_SEPARATORS.split(lowered))


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
_REQUIRED_FIELDS = ("subdomain", "path")
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
        try:
            ascii_host = ascii_host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return _fallback_subdomain(ascii_host)
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
