"""Coverage-guided fuzzing (atheris/libFuzzer) of the parsers that read untrusted input.

Targets, each with the invariants a crash means a bug for:

* ``corpus``  — ``read_article`` on arbitrary file bytes: an Article or a CorpusError, never an
  exception; errors name a known kind and a position inside the file; then ``extract`` on the
  Article never raises.
* ``links``   — ``extract`` on random nested metadata and Markdown/HTML bodies built from the
  fuzzer's bytes: never raises; every unusable URL has an invalid_url finding.
* ``urls``    — ``normalise_url``: never raises, output is ASCII http(s) without fragment or
  whitespace and normalises to itself; ``redact_url`` drops any userinfo; ``host_key`` never raises.
* ``amp``     — ``amp_cache_url`` never raises and gives an http(s) URL or an InvalidUrl.
* ``probe``   — ``ImageProbe`` fed in fuzzer-chosen chunks: never raises, never an internal
  "parser error", never more than the cap, same answer as one-piece feeding, stable after answering.
  Seeded with the real test images (tests/data/images); ``corpus`` with tests/data/articles.

atheris is not a project dependency. Install it into the venv first::

    .venv/bin/pip install atheris

Usage::

    .venv/bin/python bench/fuzz.py all [--seconds 60]    # every target, one process each
    .venv/bin/python bench/fuzz.py probe --seconds 300   # one target

Crashes are written to bench/out/fuzz/<target>/ (libFuzzer ``crash-*`` files) and the run stops
with a non-zero exit. Without atheris the script says how to install it and exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "fuzz"
SEEDS = {
    "probe": (ROOT / "tests" / "data" / "images", "*"),
    "corpus": (ROOT / "tests" / "data" / "articles", "*.md"),
}
TARGETS = ("corpus", "links", "urls", "amp", "probe")
CORPUS_KINDS = {
    "empty",
    "too_large",
    "binary",
    "not_utf8",
    "no_frontmatter",
    "yaml_syntax",
    "yaml_unsafe_tag",
    "yaml_alias_bomb",
    "not_mapping",
}
FIELDS = [
    "title", "webUrl", "ampWebUrl", "cdnAmpWebUrl", "originalUrl", "images", "url", "width", "height",
    "related", "provider", "featuredContent", "logo", "type",
]  # fmt: skip
URL_BITS = [
    "https://a.example/x", "http://u:p@b.example:8080/p?q=1#f", "//c.example/", "javascript:alert(1)",
    "data:,x", "https://xn--bcher-kva.example/", "http://[::1]/", "https://e.example/%zz", " ",
    "<a href='https://d.example/'>", "<img src=\"https://e.example/i.png\" width=10>", "![i](", "[l](", ")",
]  # fmt: skip


def _atheris():  # type: ignore[no-untyped-def]
    try:
        import atheris
    except ImportError:
        return None
    return atheris


# --- targets --------------------------------------------------------------------------------------


def target_corpus(atheris, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from monitor.corpus.discover import CorpusFile
    from monitor.corpus.read import read_article
    from monitor.links.extract import extract
    from monitor.types import Article, CorpusError

    path = _SCRATCH
    path.write_bytes(data)
    result = read_article(CorpusFile("fuzz.md", path, len(data), 0), max_bytes=256 * 1024)
    if isinstance(result, CorpusError):
        assert result.kind in CORPUS_KINDS, result
        # YAML (and CommonMark) count a lone CR as a line break too
        assert result.line is None or 1 <= result.line <= len(re.split(rb"\r\n|\r|\n", data)), result
        return
    assert isinstance(result, Article) and isinstance(result.meta, dict)
    assert all(type(key) is str for key in result.meta)
    extract(result)


def _value(fdp, depth: int) -> object:  # type: ignore[no-untyped-def]
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 5 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(4)
    if kind == 3:
        return fdp.ConsumeFloat()
    if kind == 4:
        return fdp.PickValueInList(URL_BITS)
    if kind in (5, 6):
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind == 7:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    keys = [fdp.PickValueInList(FIELDS) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    return {key: _value(fdp, depth + 1) for key in keys}


def target_links(atheris, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from monitor.links.extract import extract
    from monitor.types import Article, FindingKind

    fdp = atheris.FuzzedDataProvider(data)
    meta = {fdp.PickValueInList(FIELDS): _value(fdp, 0) for _ in range(fdp.ConsumeIntInRange(0, 8))}
    pieces = [
        fdp.PickValueInList(URL_BITS) if fdp.ConsumeBool() else fdp.ConsumeUnicode(8)
        for _ in range(fdp.ConsumeIntInRange(0, 30))
    ]
    body = "".join(pieces)
    article = Article("fuzz.md", None, meta, body, len(body), 0, "")
    occurrences, findings = extract(article)
    invalid = {f.location for f in findings if f.kind is FindingKind.INVALID_URL}
    for occ in occurrences:
        assert (occ.url is None) == (occ.location in invalid), (occ, findings)


def target_urls(atheris, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from monitor.urls import InvalidUrl, host_key, normalise_url, redact_url

    fdp = atheris.FuzzedDataProvider(data)
    prefix = fdp.PickValueInList(["", "http://", "https://", "HTTP://u:secret@", "//", "ftp://"])
    raw = prefix + fdp.ConsumeUnicode(fdp.remaining_bytes())
    result = normalise_url(raw)
    if isinstance(result, InvalidUrl):
        assert result.reason
        return
    assert result.startswith(("http://", "https://")) and result.isascii(), result
    assert "#" not in result and not any(c.isspace() for c in result), result
    assert normalise_url(result) == result, (raw, result)
    host_key(result)
    authority = result.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        redacted = redact_url(result)
        assert redacted.split("://", 1)[1].startswith("***@"), (result, redacted)
        assert redacted.count("@") <= result.count("@"), (result, redacted)


def target_amp(atheris, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from monitor.urls import InvalidUrl, amp_cache_subdomain, amp_cache_url

    fdp = atheris.FuzzedDataProvider(data)
    host = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 80))
    path = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    scheme = fdp.PickValueInList(["https://", "http://", "", "//"])
    result = amp_cache_url(f"{scheme}{host}/{path}")
    assert isinstance(result, InvalidUrl) or result.startswith(("https://", "http://")), result
    label = amp_cache_subdomain(host)
    assert label and len(label) <= 63 and label.isascii(), (host, label)


def target_probe(atheris, data: bytes) -> None:  # type: ignore[no-untyped-def]
    from monitor.probe.sniff import ImageProbe, probe_bytes

    fdp = atheris.FuzzedDataProvider(data)
    cap = fdp.PickValueInList([64, 1024, 4096, 512 * 1024])
    sizes = [fdp.ConsumeIntInRange(1, 512) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    probe = ImageProbe(cap)
    facts = None
    at = 0
    for size in [*sizes, len(body)]:
        facts = probe.feed(body[at : at + size])
        at += size
        if facts is not None or at >= len(body):
            break
    facts = facts or probe.finish()
    assert probe.bytes_seen <= cap
    assert "parser error" not in facts.detail, facts
    assert facts.error in (None, "not_image", "unreadable"), facts
    assert (facts.size is None) == (facts.error is not None), facts
    assert probe.feed(b"more") == facts == probe.finish()
    assert probe_bytes(body, cap) == facts, (facts, probe_bytes(body, cap))


_SCRATCH = Path(tempfile.gettempdir()) / f"lmm-fuzz-{os.getpid()}.md"


# --- driver ---------------------------------------------------------------------------------------


def run_one(name: str, seconds: int, extra: list[str]) -> int:
    """Fuzz ``name`` in this process for ``seconds`` (libFuzzer exits the process when done)."""
    atheris = _atheris()
    assert atheris is not None
    with atheris.instrument_imports():
        import monitor.corpus.discover
        import monitor.corpus.read
        import monitor.corpus.yaml_safe
        import monitor.links.extract
        import monitor.probe.sniff  # and, through it, every format parser
        import monitor.urls  # noqa: F401
    func = globals()[f"target_{name}"]

    def one(data: bytes) -> None:
        func(atheris, data)

    artifacts = OUT / name
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-artifact_prefix={artifacts}/", "-rss_limit_mb=2048"]
    args += ["-timeout=10", *extra]
    if name in SEEDS:  # start from real files; libFuzzer adds what it finds to the same folder
        folder, pattern = SEEDS[name]
        seeds = artifacts / "seeds"
        if not seeds.exists():
            seeds.mkdir()
            for src in sorted(p for p in folder.rglob(pattern) if p.is_file() and p.stat().st_size < 65536):
                (seeds / src.name).write_bytes(src.read_bytes()[:8192])
        args.append(str(seeds))
    atheris.Setup(args, one)
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=[*TARGETS, "all"])
    parser.add_argument("--seconds", type=int, default=60, help="time budget per target (default 60)")
    args, extra = parser.parse_known_args()
    if _atheris() is None:
        print("atheris is not installed (not a project dependency): .venv/bin/pip install atheris; skipping")
        return 0
    if args.target != "all":
        return run_one(args.target, args.seconds, extra)
    failed = []
    for name in TARGETS:  # libFuzzer runs once per process: one child per target
        print(f"== {name}: {args.seconds} s", flush=True)
        code = subprocess.call([sys.executable, __file__, name, "--seconds", str(args.seconds), *extra])
        if code != 0:
            failed.append(name)
    print("crashes in: " + ", ".join(failed) if failed else "no crashes", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    try:
        sys.exit(main())
    finally:
        _SCRATCH.unlink(missing_ok=True)
