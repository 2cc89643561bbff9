"""``send_url`` gives exactly what ``httpx.URL`` gives, on URLs others wrote and on our own corpus."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from monitor.corpus.discover import CorpusFile, discover
from monitor.corpus.read import read_article
from monitor.fetch.sendurl import PLAIN_SHAPE, send_url
from monitor.links.extract import extract
from monitor.types import Article
from monitor.urls import InvalidUrl, normalise_url

DATA = Path(__file__).resolve().parent / "data"


def normal_forms() -> list[str]:
    """Every URL of the WHATWG URL tests and of the 321 real articles, as our normaliser writes it."""
    texts = [
        case["input"]
        for case in json.loads((DATA / "whatwg" / "urltestdata.json").read_text())
        if isinstance(case, dict)
    ]
    for folder in ("articles", "articles-original"):
        for item in discover([DATA / folder], ["**/*.md"], []):
            assert isinstance(item, CorpusFile)
            article = read_article(item, max_bytes=4 * 1024 * 1024)
            if isinstance(article, Article):
                texts += [o.url for o in extract(article)[0] if o.url]
    texts += [
        "http://127.0.0.2:8080/page/1?u=2",
        "https://a.example:443/x",
        "http://a.example:80/",
        "http://a.example:8080",
        "https://a.example/%7Euser/a%2Fb?q=%25&r=a:b@c",
        "https://a.example/.well-known/x",
        "https://a.example/a|b^c",
        "https://a.example/?",
        "https://xn--bcher-kva.example/",
    ]
    found = []
    for text in texts:
        normal = normalise_url(text)
        if not isinstance(normal, InvalidUrl):
            found.append(normal)
    return sorted(set(found))


NORMAL = normal_forms()


def test_the_sample_is_large_and_mostly_takes_the_fast_path() -> None:
    fast = [u for u in NORMAL if PLAIN_SHAPE.fullmatch(u)]
    assert len(NORMAL) > 1000 and len(fast) > 0.8 * len(NORMAL)


@pytest.mark.parametrize("chunk", range(8))
def test_send_url_equals_httpx_url(chunk: int) -> None:
    """Components, text and what the transport sends are identical, fast path or not."""
    for normal in NORMAL[chunk::8]:
        try:
            expected = httpx.URL(normal)
        except Exception as exc:  # httpx refuses it (InvalidURL, or idna's own errors): so must we
            with pytest.raises(type(exc)):
                send_url(normal)
            continue
        got = send_url(normal)
        assert got._uri_reference == expected._uri_reference, normal
        assert (str(got), got.raw_path, got.raw_host, got.port) == (
            str(expected),
            expected.raw_path,
            expected.raw_host,
            expected.port,
        ), normal
