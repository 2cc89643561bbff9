"""URL normalisation, host keys and redaction (monitor/urls.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.urls import InvalidUrl, host_key, normalise_url, redact_url

PROPERTY = settings(max_examples=250, deadline=None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/a", "https://example.com/a"),
        ("  https://example.com/a \n", "https://example.com/a"),
        ("HTTPS://Example.COM/Path", "https://example.com/Path"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?q=1", "https://example.com/?q=1"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:443/x", "http://example.com:443/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://example.com:0080/x", "http://example.com/x"),
        ("http://example.com:/x", "http://example.com/x"),
        ("https://example.com./x", "https://example.com/x"),
        ("https://example.com/a#section", "https://example.com/a"),
        ("https://example.com/a?b=1#c?d", "https://example.com/a?b=1"),
        # escapes stay as written (a browser sends them so), and a stray '%' stays a '%'
        ("https://example.com/%7euser/%7Efoo", "https://example.com/%7euser/%7Efoo"),
        ("https://example.com/a%2fb%3a?x=%2b%26", "https://example.com/a%2fb%3a?x=%2b%26"),
        ("https://example.com/caf\u00e9?q=\u00fc", "https://example.com/caf%C3%A9?q=%C3%BC"),
        ("https://example.com/100%", "https://example.com/100%"),
        ("https://example.com/%zz?%", "https://example.com/%zz?%"),
        ('https://example.com/a"b<c>{d}`e', "https://example.com/a%22b%3Cc%3E%7Bd%7D%60e"),
        ("https://example.com/?a[]=1&b={x}|y", "https://example.com/?a[]=1&b={x}|y"),
        ("https://example.com/?b=2&a=1&b=1", "https://example.com/?b=2&a=1&b=1"),
        ("https://example.com/a;b,c!$&'()*+=:@", "https://example.com/a;b,c!$&'()*+=:@"),
        ("https://example.com/?", "https://example.com/?"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/%2E%2E/b", "https://example.com/b"),
        ("https://example.com/a/b/..", "https://example.com/a/"),
        ("https://example.com/../../x", "https://example.com/x"),
        ("https://example.com/a.html?x=/./..", "https://example.com/a.html?x=/./.."),
        ("https://b\u00fccher.example/x", "https://xn--bcher-kva.example/x"),
        ("https://B\u00dcCHER.example/x", "https://xn--bcher-kva.example/x"),
        ("https://xn--57hw060o.com/", "https://xn--57hw060o.com/"),
        ("http://[2001:DB8::0:1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://[::1]:80/", "http://[::1]/"),
        ("https://User:P%61ss@Example.com/", "https://User:P%61ss@example.com/"),
        ("https://user:@example.com/", "https://user@example.com/"),
        ("https://:@example.com/", "https://example.com/"),
        ("https://user:p@ss@example.com/", "https://user:p%40ss@example.com/"),
        ("https://@example.com/", "https://example.com/"),
        ("https://my_host.example.com/", "https://my_host.example.com/"),
        # as a browser reads what a CMS pasted: spaces encoded, tabs and newlines removed, '\' is '/'
        ("https://example.com/my file.jpg", "https://example.com/my%20file.jpg"),
        ("https://example.com/a b?c d", "https://example.com/a%20b?c%20d"),
        ("https://example.com/a\u00a0b", "https://example.com/a%C2%A0b"),
        ("https://example.com/a\x00b\x7f", "https://example.com/a%00b%7F"),
        ("https://exam\tple.com/pa\nth\r", "https://example.com/path"),
        ("https:\\\\example.com\\a\\b", "https://example.com/a/b"),
        ("https://example.com:00443/", "https://example.com/"),
        ("https://example.com:0/", "https://example.com:0/"),
        ("https:///example.com/x", "https://example.com/x"),
        ("https://exa%41mple.com/", "https://exaample.com/"),
        # UTS #46 non-transitional, as browsers: "ß" stays "ß" (not "ss"), so a different domain
        ("https://stra\u00dfe.de/", "https://xn--strae-oqa.de/"),
        ("https://\u2615.example/", "https://xn--53h.example/"),
        # every numeric IPv4 spelling becomes dotted decimal, which the address guard then sees
        ("http://2852039166/", "http://169.254.169.254/"),
        ("http://0xa9fea9fe/", "http://169.254.169.254/"),
        ("http://169.254.43518/", "http://169.254.169.254/"),
        ("http://0xa.1.2.3/", "http://10.1.2.3/"),
        ("http://10.1.515/", "http://10.1.2.3/"),
        ("http://0177.0.0.1/", "http://127.0.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://0/", "http://0.0.0.0/"),
        ("http://1.2.3.4./", "http://1.2.3.4/"),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
        ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
    ],
)
def test_normalise_url_canonical_form(raw: str, expected: str) -> None:
    """Valid http(s) URLs come out in the canonical form, and that form is a fixed point."""
    assert normalise_url(raw) == expected
    assert normalise_url(expected) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "not a string"),
        (42, "not a string"),
        (b"https://example.com/", "not a string"),
        ("", "empty"),
        ("   \t\n", "empty"),
        ("not a url", "no scheme"),
        ("https://exa mple.com/", "invalid host 'exa mple.com'"),
        ("//cdn.example.com/i.png", "scheme-relative URL"),
        ("\\\\cdn.example.com/i.png", "scheme-relative URL"),
        ("example.com/x", "no scheme"),
        ("localhost:8080/x", "no scheme"),
        ("example.com:8080/x", "no scheme"),
        ("/relative/path", "relative URL"),
        ("./x", "relative URL"),
        ("?q=1", "relative URL"),
        ("#top", "relative URL"),
        ("ftp://example.com/f", "unsupported scheme 'ftp'"),
        ("mailto:someone@example.com", "unsupported scheme 'mailto'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("data:image/png;base64,AAAA", "unsupported scheme 'data'"),
        ("FILE:///etc/passwd", "unsupported scheme 'file'"),
        ("https://", "missing host"),
        ("https:example.com", "missing '//' after 'https:'"),
        ("http:/example.com", "missing '//' after 'http:'"),
        ("HTTP:example.com", "missing '//' after 'http:'"),
        ("https://user@/x", "missing host"),
        ("https://:80/", "missing host"),
        ("https://example.com:99999/", "invalid port '99999'"),
        ("https://example.com:http/", "invalid port 'http'"),
        ("https://example.com:80:80/", "invalid port '80:80'"),
        ("https://exa%zzmple.com/", "invalid host 'exa%zzmple.com'"),
        ("https://exa<mple.com/", "invalid host 'exa<mple.com'"),
        ("http://256.256.256.256/", "invalid IPv4 address '256.256.256.256'"),
        ("http://1.2.3.08/", "invalid IPv4 address '1.2.3.08'"),
        ("http://1.2.3.4.5/", "invalid IPv4 address '1.2.3.4.5'"),
        ("http://0x100000000/", "invalid IPv4 address"),
        ("http://xn--a.com/", "invalid punycode label 'xn--a'"),
        ("http://a.b.c.xn--pokxncvks/", "invalid punycode label 'xn--pokxncvks'"),
        ("http://xn--/", "invalid punycode label 'xn--'"),
        ("https://[::1/", "unterminated IPv6 address"),
        ("https://[not-v6]/", "invalid IPv6 address 'not-v6'"),
        ("https://[fe80::1%25eth0]/", "IPv6 zone identifiers are not supported"),
        ("https://[::1]x/", "invalid host"),
        ("https://\u2100.com/", "invalid host"),
        ("https://example.com/\ud800", "not valid Unicode (lone surrogate)"),
        ("https://\udfff@example.com/", "not valid Unicode (lone surrogate)"),
        ("https://ex\ud800ample.com/", "not valid Unicode (lone surrogate)"),
    ],
)
def test_normalise_url_rejects_with_reason(raw: object, reason: str) -> None:
    """Uncheckable input becomes an InvalidUrl whose reason names the problem."""
    result = normalise_url(raw)
    assert isinstance(result, InvalidUrl)
    assert result.reason.startswith(reason)


def test_normalise_url_length_limit() -> None:
    """URLs longer than max_length are invalid, both as given and after percent-encoding grows them."""
    url = "https://example.com/" + "a" * 80
    assert normalise_url(url, max_length=100) == url
    assert normalise_url(url, max_length=99) == InvalidUrl("longer than 99 characters")
    grows = "https://example.com/" + "\u00e9" * 30  # 50 characters in, 200 out
    assert normalise_url(grows, max_length=100) == InvalidUrl("longer than 100 characters")


def test_invalid_url_reason_quotes_are_bounded() -> None:
    """A reason quoting the input stays short even for huge garbage."""
    result = normalise_url("https://example.com:" + "9" * 1000 + "/", max_length=5000)
    assert isinstance(result, InvalidUrl)
    assert len(result.reason) < 80


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://example.com/a", "example.com"),
        ("https://Example.COM:443/a", "example.com"),
        ("http://example.com:80", "example.com"),
        ("http://example.com:8080/a?b", "example.com:8080"),
        ("https://example.com:80/", "example.com:80"),
        ("https://user:pw@example.com/", "example.com"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("https://example.com?x=@evil", "example.com"),
        ("no url at all", ""),
    ],
)
def test_host_key(url: str, key: str) -> None:
    """host_key is the lowercase host plus any non-default port, without userinfo."""
    assert host_key(url) == key


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:pw@h/x", "https://***@h/x"),
        ("https://user@h/x", "https://***@h/x"),
        ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
        (
            "https://h/x?a=1&access_token=t&API_KEY=k&apikey=k2",
            "https://h/x?a=1&access_token=***&API_KEY=***&apikey=***",
        ),
        (
            "https://h/x?key=k&sig=s&signature=s2&password=p",
            "https://h/x?key=***&sig=***&signature=***&password=***",
        ),
        ("https://h/x?secret=s&auth=a&client_secret=c", "https://h/x?secret=***&auth=***&client_secret=***"),
        (
            "https://h/x?X-Amz-Signature=abc&X-Amz-Credential=c",
            "https://h/x?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://h/x?accessToken=abc", "https://h/x?accessToken=***"),
        ("https://h/x?author=me&keyword=k&monkey=m", "https://h/x?author=me&keyword=k&monkey=m"),
        ("https://h/x?token=&token", "https://h/x?token=&token"),
        ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1"),
        ("https://h/x?email=a@b.c", "https://h/x?email=a@b.c"),
        ("https://h/plain", "https://h/plain"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    """Credentials in userinfo and secret-looking parameters are replaced by ***; the rest is untouched."""
    assert redact_url(url) == redacted


# --- properties ------------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9\-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_UNICODE_LABEL = st.text(st.characters(categories=["Ll", "Lu", "Lo"]), min_size=1, max_size=8)
_HOSTS = st.lists(st.one_of(_LABEL, _UNICODE_LABEL), min_size=1, max_size=4).map(".".join)
_COMPONENT = st.lists(
    st.one_of(
        st.sampled_from(list("abcXYZ019-._~!$&'()*+,;=:@/?%[]{}|^`\"<>\\")),
        st.sampled_from(["%7e", "%7E", "%2F", "%2f", "%41", "%zz", "%", "%%", "..", "./"]),
        st.characters(categories=["Ll", "Lo", "So", "Nd", "Cs", "Cf"]),
    ),
    max_size=20,
).map("".join)
_URLISH = st.builds(
    lambda scheme, userinfo, host, port, path, query, fragment: (
        f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"
    ),
    st.sampled_from(["http", "https", "HTTP", "HtTpS"]),
    st.sampled_from(["", "user@", "u:p@", "a%40b:c@", "\u00fc:x@", "\ud800@", "a b@"]),
    _HOSTS,
    st.sampled_from(["", ":80", ":443", ":8080", ":0", ":"]),
    _COMPONENT.map(lambda text: "/" + text),
    st.one_of(st.just(""), _COMPONENT.map(lambda text: "?" + text)),
    st.one_of(st.just(""), _COMPONENT.map(lambda text: "#" + text)),
)
_ANYTHING = st.one_of(
    st.text(),
    _URLISH,
    st.binary(),
    st.integers(),
    st.none(),
    st.lists(st.text(), max_size=2),
)


@PROPERTY
@given(_ANYTHING)
def test_normalise_never_raises_and_output_is_clean(raw: object) -> None:
    """Any input yields either an InvalidUrl or an http(s) URL with no fragment and no whitespace."""
    result = normalise_url(raw)
    if isinstance(result, InvalidUrl):
        assert result.reason
        return
    assert isinstance(result, str)
    assert result.startswith(("http://", "https://"))
    assert "#" not in result
    assert re.search(r"\s", result) is None
    assert result.isascii()


@PROPERTY
@given(st.one_of(_URLISH, st.text()))
def test_normalise_is_idempotent(raw: str) -> None:
    """Normalising a normalised URL returns it unchanged."""
    once = normalise_url(raw)
    if isinstance(once, str):
        assert normalise_url(once) == once


_SAFE_SEGMENT = st.from_regex(r"[a-zA-Z0-9\-._~%]{1,12}", fullmatch=True)


def _sprinkle(text: str, mask: list[bool], junk: str) -> str:
    """``text`` with ``junk`` inserted after the characters the (cycled) mask selects."""
    return "".join(char + (junk if mask[index % len(mask)] else "") for index, char in enumerate(text))


@PROPERTY
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    segments=st.lists(_SAFE_SEGMENT, max_size=4),
    mask=st.lists(st.booleans(), min_size=1, max_size=5),
    junk=st.sampled_from(["\t", "\n", "\r\n"]),
    backslashes=st.booleans(),
    upper_scheme=st.booleans(),
    swap_host_case=st.booleans(),
    spell_port=st.booleans(),
    trailing_dot=st.booleans(),
)
def test_equivalent_spellings_normalise_equal(
    scheme: str,
    host: str,
    segments: list[str],
    mask: list[bool],
    junk: str,
    backslashes: bool,
    upper_scheme: bool,
    swap_host_case: bool,
    spell_port: bool,
    trailing_dot: bool,
) -> None:
    """Scheme/host case, explicit default ports, a trailing dot, tabs and newlines anywhere and '\\'
    for '/' do not change a URL (a browser reads them all as one)."""
    path = "/" + "/".join(segments)
    plain = f"{scheme}://{host}{path}"
    variant = "".join(
        (
            scheme.upper() if upper_scheme else scheme,
            ":\\\\" if backslashes else "://",
            host.swapcase() if swap_host_case else host,
            "." if trailing_dot else "",
            (":80" if scheme == "http" else ":443") if spell_port else "",
            path.replace("/", "\\") if backslashes else path,
        )
    )
    expected = normalise_url(plain)
    if isinstance(expected, str):
        assert normalise_url(_sprinkle(variant, mask, junk)) == expected
