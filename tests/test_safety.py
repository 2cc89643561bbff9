"""Network safety and resource limits, end to end through ``run_check`` and the real fixture server.

The corpus is untrusted: these tests write hostile articles, run a real check with the default
safety policy (loopback and private networks refused) unless a test opens exactly what it needs,
and then look at what the server saw, what the database holds and what the logs and reports say.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, inspect, select, text

from monitor.config import Settings
from monitor.logs import configure_logging
from monitor.run.check import RunOutcome, run_check
from monitor.store.db import open_engine
from monitor.store.models import FindingRow, ResultRow, UrlRow
from reports import FORMATS, build_report, render
from tests.server import FixtureServer
from tests.test_check import ROOT, settings_for, write

SECRET_PASSWORD = "pw-S3cr3tUserinfo"
SECRET_HEADER = "Bearer hdr-S3cr3tToken"
# Tables that hold the corpus as written: a URL's userinfo must stay there to be usable at all.
INVENTORY = {("url", "url"), ("occurrence", "raw_url")}


pytestmark = pytest.mark.usefixtures("plain_structlog")  # in-process runs configure logging


def strict(tmp_path: Path, **extra: object) -> Settings:
    """Settings with the default safety policy (nothing private allowed) and fast retries."""
    return settings_for(tmp_path, **{"safety.allow_private": False, **extra})


def check(settings: Settings) -> tuple[RunOutcome, Engine]:
    engine = open_engine(settings.database_url)
    return asyncio.run(run_check(settings, engine)), engine


def results(engine: Engine) -> dict[str, Any]:
    """URL → its latest result row (as a mapping)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(UrlRow.url, ResultRow)
            .join(ResultRow, ResultRow.url_id == UrlRow.id)
            .order_by(ResultRow.id)
        ).all()
    return {row[0]: row._mapping for row in rows}


def to(target: str) -> str:
    """The query string that makes /redirect-to send ``target`` as its Location."""
    return "?to=" + quote(target, safe="")


def frontmatter(**fields: str) -> str:
    return "---\n" + "".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items()) + "---\n"


# --- SSRF guard ----------------------------------------------------------------------------------


def test_loopback_url_is_skipped_with_the_address_named(server: FixtureServer, tmp_path: Path) -> None:
    """A corpus link to 127.0.0.1 is judged skipped, names the address, and the server never hears of it."""
    url = server.url("/status/200")
    write(tmp_path, "a.md", frontmatter(webUrl=url))
    outcome, engine = check(strict(tmp_path))
    row = results(engine)[url]
    assert outcome.counts == {"skipped": 1}
    assert row["verdict"] == "skipped" and row["failure"] == "blocked_address"
    assert "127.0.0.1 is a loopback address" in row["reason"]
    assert server.requests("/") == []


def test_metadata_and_private_literals_are_refused_before_any_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """169.254.169.254 and 10.x are skipped at once: no socket ever tries to connect to them."""
    connects: list[object] = []
    original = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def recording(self: Any, sock: Any, address: Any) -> None:
        connects.append(address)
        await original(self, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", recording)
    urls = {
        "http://169.254.169.254/latest/meta-data/iam/": "169.254.169.254 is a link-local",
        "http://10.11.12.13:8080/admin": "10.11.12.13 is a private address",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/": "is a link-local",
        "http://[fd00::1]/": "fd00::1 is a private address",
    }
    write(tmp_path, "a.md", frontmatter(webUrl=next(iter(urls))))
    write(
        tmp_path,
        "b.md",
        "---\nrelated:\n" + "".join(f"  - webUrl: {json.dumps(u)}\n" for u in urls) + "---\n",
    )
    # generous connect timeouts: had anything been sent to these unroutable addresses, the run would hang
    settings = strict(tmp_path, **{"http.connect_timeout": 30.0, "http.total_timeout": 60.0})
    outcome, engine = check(settings)
    assert outcome.counts == {"skipped": len(urls)}
    rows = results(engine)
    for url, why in urls.items():
        assert why in rows[url]["reason"]
    assert connects == []


def test_redirect_from_an_allowed_host_to_a_blocked_address_is_not_followed(
    server: FixtureServer, tmp_path: Path
) -> None:
    """allow_hosts opens "localhost" only: its redirects to 127.0.0.1 or the metadata address stop there."""
    blocked = server.url("/status/200?reached=1")
    start_loop = server.url("/redirect-to/302" + to(blocked), "localhost")
    start_meta = server.url("/redirect-to/307" + to("http://169.254.169.254/latest/"), "localhost")
    write(tmp_path, "a.md", frontmatter(webUrl=start_loop, ampWebUrl=start_meta))
    outcome, engine = check(strict(tmp_path, **{"safety.allow_hosts": ["localhost"]}))
    rows = results(engine)
    assert outcome.counts == {"skipped": 2}
    assert "127.0.0.1 is a loopback address" in rows[start_loop]["reason"]
    assert "169.254.169.254 is a link-local address" in rows[start_meta]["reason"]
    assert sorted(r.path for r in server.requests("/")) == ["/redirect-to/302", "/redirect-to/307"]
    assert server.requests("/status") == []


def test_allow_cidrs_opens_one_network_and_nothing_else(server: FixtureServer, tmp_path: Path) -> None:
    """allow_cidrs=127.0.0.1/32 lets the fixture through while 127.0.0.2 and 10.x stay refused."""
    ok, other = server.url("/status/200"), f"http://127.0.0.2:{server.port}/status/200"
    write(tmp_path, "a.md", frontmatter(webUrl=ok, ampWebUrl=other, originalUrl="http://10.0.0.1/"))
    outcome, engine = check(strict(tmp_path, **{"safety.allow_cidrs": ["127.0.0.1/32"]}))
    assert outcome.counts == {"ok": 1, "skipped": 2}
    assert "127.0.0.2 is a loopback address" in results(engine)[other]["reason"]


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://files.example/secret.txt",
        "data:text/html,<script>alert(1)</script>",
        "javascript:alert(document.cookie)",
        "gopher://127.0.0.1:6379/_FLUSHALL",
    ],
)
def test_redirect_to_another_scheme_is_broken_and_never_followed(
    server: FixtureServer, tmp_path: Path, location: str
) -> None:
    """A Location with a non-http(s) scheme ends the chain as broken, saying which scheme."""
    url = server.url("/redirect-to/302" + to(location))
    write(tmp_path, "a.md", frontmatter(webUrl=url))
    outcome, engine = check(settings_for(tmp_path))
    row = results(engine)[url]
    scheme = location.split(":", 1)[0]
    assert outcome.counts == {"broken": 1}
    assert row["failure"] == "bad_redirect" and f"({scheme} scheme) not followed" in row["reason"]
    assert [r.path for r in server.requests("/")] == ["/redirect-to/302"]


def test_credentials_never_reach_logs_results_or_reports(server: FixtureServer, tmp_path: Path) -> None:
    """Userinfo passwords and a configured Authorization header appear in no log line, no stored
    result and no report format, over two runs (the second one raises alerts)."""
    port = server.port
    cred = f"http://alice:{SECRET_PASSWORD}@127.0.0.1:{port}"
    broken, moved = f"{cred}/status/404", f"{cred}/redirect-to/301?to=/status/200"
    write(
        tmp_path,
        "a.md",
        frontmatter(title="creds", webUrl=broken, ampWebUrl=moved, originalUrl=f"{cred}/slow-headers/3000")
        + f"See [the page]({cred}/status/410) and ![img]({cred}/html-as-image).\n",
    )
    settings = settings_for(
        tmp_path,
        **{
            "http.headers": {"Authorization": SECRET_HEADER},
            "http.hosts": {f"127.0.0.1:{port}": {"headers": {"X-Api-Key": SECRET_HEADER}}},
            # long enough that on a loaded machine only the 3 s URL times out: a request given up
            # early would be read by the shared fixture server later, inside the next test
            "http.total_timeout": 2.0,
            "logging.level": "debug",
        },
    )
    logs = io.StringIO()
    configure_logging(settings.logging, stream=logs)
    engine = open_engine(settings.database_url)
    for _ in range(2):
        asyncio.run(run_check(settings, engine))
    # the credentials did travel where they belong: as Authorization to the URL that carries them
    assert any(
        r.headers.get("authorization", "").startswith("Basic ") for r in server.requests("/status/404")
    )
    secrets = (SECRET_PASSWORD, SECRET_HEADER.split()[-1])
    lines = logs.getvalue().splitlines()
    assert any('"event": "link.broken"' in line for line in lines)
    assert not [line for line in lines if any(s in line for s in secrets)]
    assert not leaks_in_database(engine, secrets)
    data = build_report(engine, None)
    for fmt in FORMATS:
        body = render(data, fmt)
        assert f"127.0.0.1:{port}" in body and not [s for s in secrets if s in body], fmt
        assert fmt == "table" or f"://***@127.0.0.1:{port}/status/404" in body, fmt  # table cells are cut


def leaks_in_database(engine: Engine, secrets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(table, column) pairs outside the inventory whose text holds any of ``secrets``."""
    found = []
    inspector = inspect(engine)
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            for column in inspector.get_columns(table):
                name = column["name"]
                if (table, name) in INVENTORY:
                    continue
                for secret in secrets:
                    query = text(f'SELECT count(*) FROM "{table}" WHERE CAST("{name}" AS TEXT) LIKE :p')
                    if conn.execute(query, {"p": f"%{secret}%"}).scalar_one():
                        found.append((table, name))
    return found


def test_per_host_headers_and_userinfo_stay_with_their_host(server: FixtureServer, tmp_path: Path) -> None:
    """localhost's configured header and a URL's own credentials are not sent across a redirect to
    127.0.0.1 (another host key on the same listener); the global header goes everywhere."""
    port = server.port
    echo = server.url("/echo-headers")
    via_header = server.url("/redirect-to/302" + to(echo + "?via=header"), "localhost")
    via_userinfo = f"http://bob:{SECRET_PASSWORD}@localhost:{port}/redirect-to/302" + to(echo + "?via=creds")
    write(tmp_path, "a.md", frontmatter(webUrl=via_header, ampWebUrl=via_userinfo))
    settings = settings_for(
        tmp_path,
        **{
            "http.headers": {"X-Team": "links"},
            "http.hosts": {f"localhost:{port}": {"headers": {"X-Host-Secret": "for-localhost-only"}}},
        },
    )
    outcome, _ = check(settings)
    assert outcome.counts == {"redirected": 2}
    first_hops = server.requests("/redirect-to")
    assert all(r.host == f"localhost:{port}" for r in first_hops)
    assert all(r.headers["x-host-secret"] == "for-localhost-only" for r in first_hops)
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in first_hops)
    landed = server.requests("/echo-headers")
    assert sorted(r.target for r in landed) == ["/echo-headers?via=creds", "/echo-headers?via=header"]
    for seen in landed:
        assert seen.host == f"127.0.0.1:{port}" and seen.headers["x-team"] == "links"
        assert "x-host-secret" not in seen.headers and "authorization" not in seen.headers


# --- resource limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_compression_bomb_stops_at_the_cap(server: FixtureServer, tmp_path: Path, encoding: str) -> None:
    """100 MB of compressed zeros as a page (GET after a refused HEAD) and as an image: at most the cap is
    decoded, whatever the bomb would expand to."""
    page = server.url(f"/gzip-bomb?enc={encoding}&head_status=405")
    image = server.url(f"/gzip-bomb?enc={encoding}&type=image/png")
    write(tmp_path, "a.md", frontmatter(webUrl=page) + f"![x]({image})\n")
    page_cap, image_cap = 64 * 1024, 256 * 1024
    _, engine = check(
        settings_for(tmp_path, **{"http.page_body_cap": page_cap, "http.image_byte_cap": image_cap})
    )
    rows = results(engine)
    assert 0 < rows[page]["bytes_read"] <= page_cap and rows[page]["verdict"] == "ok"
    assert 0 < rows[image]["bytes_read"] <= image_cap
    assert rows[image]["verdict"] == "image_unreadable"


@pytest.mark.parametrize(
    "path",
    ["/slow-drip?every_ms=50&head_status=405", "/hang-after-headers?head_status=405", "/slow-headers/30000"],
)
def test_slow_servers_are_bounded_by_the_total_timeout(
    server: FixtureServer, tmp_path: Path, path: str
) -> None:
    """A body dripping a byte at a time, a server that hangs after its headers and one that never answers
    all end as timeouts once total_timeout (0.5 s) is spent, read timeouts notwithstanding."""
    url = server.url(path)
    write(tmp_path, "a.md", frontmatter(webUrl=url))
    settings = settings_for(tmp_path, **{"http.total_timeout": 0.5, "http.read_timeout": 30.0})
    outcome, engine = check(settings)
    row = results(engine)[url]
    assert outcome.counts == {"timeout": 1}
    assert "total deadline of 0.5 s exceeded" in row["reason"]
    assert row["elapsed_ms"] >= 500


def test_too_many_redirects_stop_at_the_limit(server: FixtureServer, tmp_path: Path) -> None:
    """A 30-hop chain with max_redirects=5 is broken after 6 requests, with the reason stored."""
    url = server.url("/redirect/30")
    write(tmp_path, "a.md", frontmatter(webUrl=url))
    outcome, engine = check(settings_for(tmp_path, **{"http.max_redirects": 5}))
    row = results(engine)[url]
    assert outcome.counts == {"broken": 1}
    assert row["failure"] == "too_many_redirects" and "more than 5 redirects" in row["reason"]
    assert len(server.requests("/redirect/")) == 6


def test_overlong_url_is_an_invalid_url_finding_and_not_fetched(
    server: FixtureServer, tmp_path: Path
) -> None:
    """A URL longer than corpus.max_url_length becomes an invalid_url finding; nothing is requested."""
    long_url = server.url("/status/200?pad=" + "a" * 300)
    write(tmp_path, "a.md", frontmatter(webUrl=long_url, ampWebUrl=server.url("/status/200")))
    outcome, engine = check(settings_for(tmp_path, **{"corpus.max_url_length": 256}))
    assert outcome.counts == {"ok": 1}
    with engine.connect() as conn:
        findings = conn.execute(select(FindingRow.kind, FindingRow.location, FindingRow.message)).all()
    assert [(kind, where) for kind, where, _ in findings] == [("invalid_url", "webUrl")]
    assert "longer than 256 characters" in findings[0][2]
    assert [r.target for r in server.requests("/")] == ["/status/200"]


def test_oversized_header_line_is_too_large(server: FixtureServer, tmp_path: Path) -> None:
    """A 100 KB header line (max_header_bytes 64 KiB) is broken: "answer too large", read no further."""
    url = server.url("/big-header?bytes=100000")
    write(tmp_path, "a.md", frontmatter(webUrl=url))
    outcome, engine = check(settings_for(tmp_path))
    row = results(engine)[url]
    assert outcome.counts == {"broken": 1}
    assert row["failure"] == "too_large" and "answer too large" in row["reason"]


class HeaderFlood:
    """A raw server whose answer is ``count`` small header lines (100 KB in all) or an endless stream."""

    def __init__(self) -> None:
        self.port = 0
        self.sent: dict[str, int] = {}
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HeaderFlood:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")
            sent = 0
            endless = path.startswith("/endless")
            while endless or sent < 100_000:
                line = b"X-Filler-%08d: %s\r\n" % (sent, b"v" * 30)
                writer.write(line)
                sent += len(line)
                await writer.drain()
                if endless:
                    await asyncio.sleep(0.001)
            self.sent[path] = sent
            writer.write(b"Content-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def test_header_floods_are_refused(tmp_path: Path) -> None:
    """100 KB spread over 2,000 short headers, and headers that never end, are both 'answer too large'."""
    write(tmp_path, "placeholder.md", "---\ntitle: x\n---\n")

    async def go() -> tuple[RunOutcome, Engine, int]:
        async with HeaderFlood() as flood:
            base = f"http://127.0.0.1:{flood.port}"
            write(tmp_path, "a.md", frontmatter(webUrl=f"{base}/many", ampWebUrl=f"{base}/endless"))
            settings = settings_for(tmp_path, **{"http.total_timeout": 5.0})
            engine = open_engine(settings.database_url)
            return await run_check(settings, engine), engine, flood.port

    outcome, engine, port = asyncio.run(go())
    rows = results(engine)
    assert outcome.counts == {"broken": 2}
    for path in ("/many", "/endless"):
        row = rows[f"http://127.0.0.1:{port}{path}"]
        assert row["failure"] == "too_large" and row["elapsed_ms"] < 3000


# --- open-file limit -----------------------------------------------------------------------------


def test_concurrency_is_lowered_below_the_open_file_limit() -> None:
    """Under a soft RLIMIT_NOFILE of 256, asking for 100,000 requests at once gives (256 - 64) / 2, warned."""
    script = textwrap.dedent(
        """
        import json, resource
        from structlog.testing import capture_logs
        from monitor.run.dispatch import effective_concurrency
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        with capture_logs() as logs:
            got = effective_concurrency(100_000)
            same = effective_concurrency(50)
        print(json.dumps({"got": got, "same": same, "events": logs}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(done.stdout)
    assert out["got"] == 96 and out["same"] == 50
    (event,) = out["events"]
    assert event["event"] == "concurrency.lowered" and event["open_file_limit"] == 256
    assert event["wanted"] == 100_000 and event["lowered_to"] == 96


def test_check_with_huge_concurrency_under_ulimit_256_does_not_run_out_of_descriptors(tmp_path: Path) -> None:
    """`ulimit -n 256` and --concurrency 10000 (the configured maximum) over 400 slow URLs on one host:
    the check lowers its concurrency, warns, and every URL is ok (no EMFILE anywhere)."""
    fixture = FixtureServer().start()
    try:
        for i in range(40):
            links = "".join(f"[i]({fixture.url(f'/slow-headers/200?a={i}&n={n}')})\n" for n in range(10))
            write(tmp_path, f"a{i}.md", "---\ntitle: t\n---\n" + links)
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'database_url = "sqlite:///{tmp_path}/check.db"\n[corpus]\nroots = ["{tmp_path}/corpus"]\n'
            "[safety]\nallow_private = true\n[http]\nper_host_concurrency = 1000\n"
            '[logging]\nformat = "json"\n'
        )
        cli = f"{sys.executable} -m monitor.cli -c {cfg}"
        command = f"ulimit -n 256 && exec {cli} check --concurrency 10000 -f json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, env=env)
        peak = max(fixture.peak_by_host().values())
    finally:
        fixture.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    lowered = [e for e in events if e["event"] == "concurrency.lowered"]
    assert lowered and lowered[0]["lowered_to"] == 96 and lowered[0]["open_file_limit"] == 256
    finished = [e for e in events if e["event"] == "run.finished"]
    assert finished and finished[0]["checked"] == 400
    assert finished[0]["counts"] == {"ok": 400}
    assert "Too many open files" not in done.stderr and 1 < peak <= 96
