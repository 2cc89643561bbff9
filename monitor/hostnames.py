"""Host rules on top of the WHATWG URL parser, and why an authority did not parse.

The WHATWG parser (``ada_url``) decides what a host is: it maps international names by UTS #46
non-transitional processing (``straße.de`` stays ``xn--strae-oqa.de``), turns every numeric IPv4
spelling into dotted decimal and rejects hosts that end in a number but are not IPv4. Two
rules of ours follow, both applied to a host the parser accepted:

* an ``xn--`` label must be valid punycode that decodes to a valid UTS #46 label. The standard
  accepts a pure-ASCII host as written (so ``xn--pokxncvks`` passes), but no registry hands out
  such a name: it can only cost a DNS lookup and an ``unreachable`` verdict, where
  ``invalid_url`` says what is wrong;
* one trailing dot is dropped (``example.com.`` → ``example.com``): the same host for DNS, but a
  second deduplication key, and a name TLS certificates do not carry.

When the parser rejects a URL it says only "invalid"; ``authority_problem`` finds which part of
the authority is at fault, so a finding can name it.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from ada_url import idna_to_ascii, idna_to_unicode

__all__ = ["authority_problem", "host_problem", "short", "strip_trailing_dot", "to_ascii"]

_AUTHORITY_END = re.compile(r"[/\\?#]")
_NUMBER = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")
_ASCII_SURROUNDING = "".join(map(chr, range(0x21)))


def short(text: str) -> str:
    """Quote a piece of input in a reason without letting it grow unbounded."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


@functools.lru_cache(maxsize=1024)
def _valid_a_label(label: str) -> bool:
    """``xn--…`` decodes (punycode) to a label that UTS #46 encodes back to the same ``xn--…``."""
    unicode_label = idna_to_unicode(label)
    if unicode_label == label or unicode_label.isascii():
        return False  # not decodable or not valid (ada gives it back as is), or an ASCII disguise
    return idna_to_ascii(unicode_label) == label.encode("ascii")


def host_problem(host: str) -> str | None:
    """Why a host the WHATWG parser accepted is still not checkable (bad ``xn--`` label), or None."""
    for label in host.split("."):
        if label.startswith("xn--") and not _valid_a_label(label):
            return f"invalid punycode label {short(label)}"
    return None


def strip_trailing_dot(host: str) -> str:
    """``example.com.`` → ``example.com``; hosts like ``.`` or ``a..`` (empty labels) stay as they are."""
    if len(host) > 1 and host.endswith(".") and host[-2] != ".":
        return host[:-1]
    return host


def to_ascii(host: str) -> str | None:
    """The UTS #46 (non-transitional) ASCII form of a host, or None when it has none."""
    try:
        return idna_to_ascii(host).decode("ascii") or None
    except (UnicodeError, ValueError):
        return None


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    return _NUMBER.fullmatch(labels[-1]) is not None


def authority_problem(after_scheme: str) -> str:
    """Why the authority of ``after_scheme`` (the text after ``http:``) did not parse, in words."""
    rest = after_scheme.lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return "unterminated IPv6 address"
        literal, tail = hostport[1:close], hostport[close + 1 :]
        if "%" in literal:
            return "IPv6 zone identifiers are not supported"
        if tail and not (tail.startswith(":") and tail[1:].isdigit()):
            return f"invalid host {short(hostport)}"
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return f"invalid IPv6 address {short(literal)}"
        host, port = "[ok]", tail[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return f"invalid port {short(port)}"
    host = host.strip(_ASCII_SURROUNDING)
    if not host:
        return "missing host"
    if _ends_in_number(host):
        return f"invalid IPv4 address {short(host)}"
    if host != "[ok]":
        return f"invalid host {short(host)}"
    return "not a valid URL"
