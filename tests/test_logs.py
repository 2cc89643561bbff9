"""Logging: configuration, JSON shape, run binding and secret redaction."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from monitor.config import LogSettings
from monitor.logs import EVENTS, MASK, bind_run, close_logging, configure_logging, get_logger, redact_text
from monitor.urls import SECRET_PARAMS, redact_url

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults and no bound context."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    close_logging()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def configured(fmt: str = "auto", level: str = "info", run_id: int | None = None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(LogSettings(format=fmt, level=level), run_id=run_id, stream=stream)  # type: ignore[arg-type]
    return stream


def test_json_line_has_timestamp_level_event_and_run_id() -> None:
    """A JSON event carries an ISO-8601 UTC timestamp, level, event, run_id and its keys."""
    stream = configured(run_id=42)
    get_logger("monitor.run").info("run.started", trigger="cli", targets=3)
    (line,) = json_lines(stream.getvalue())
    assert ISO_UTC.match(line["timestamp"])
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert (line["level"], line["event"], line["run_id"], line["targets"]) == ("info", "run.started", 42, 3)
    assert line["logger"] == "monitor.run"


def test_run_id_is_present_even_when_unbound() -> None:
    """Outside a run every event still has a run_id key, set to null."""
    stream = configured()
    get_logger().warning("job.skipped", job="prune_history", reason="lease held")
    (line,) = json_lines(stream.getvalue())
    assert line["run_id"] is None and line["level"] == "warning"


def test_bind_run_applies_to_later_events() -> None:
    """bind_run changes the run_id of every following event."""
    stream = configured(run_id=1)
    log = get_logger()
    log.info("a")
    bind_run(2)
    log.info("b")
    assert [line["run_id"] for line in json_lines(stream.getvalue())] == [1, 2]


def test_level_filter_drops_lower_levels() -> None:
    """Events below the configured level are not written."""
    stream = configured(level="warning")
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.error("e")
    assert [line["event"] for line in json_lines(stream.getvalue())] == ["e"]


def test_exception_is_a_dict_traceback_without_locals() -> None:
    """log.exception renders a structured traceback, redacted and without frame locals."""
    stream = configured()
    password_url = "https://alice:hunter2@db.example.com/x"
    try:
        raise RuntimeError(f"cannot reach {password_url}")
    except RuntimeError:
        get_logger().exception("run.failed", error="boom")
    (line,) = json_lines(stream.getvalue())
    (exc,) = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"] == "cannot reach https://***@db.example.com/x"
    assert "hunter2" not in stream.getvalue()
    assert all("locals" not in frame or frame["locals"] is None for frame in exc["frames"])


def test_json_values_are_redacted_recursively() -> None:
    """Secrets in strings, nested lists and header mappings never reach the output."""
    stream = configured()
    get_logger().info(
        "link.broken",
        url="https://u:pw@h.example/p?token=abc123&page=2",
        locations=["a.md:x https://h.example/?api_key=K9"],
        headers={"Authorization": "Bearer s3cr3t", "Accept": "text/html"},
        cookie="session=zzz",
    )
    (line,) = json_lines(stream.getvalue())
    assert line["url"] == "https://***@h.example/p?token=***&page=2"
    assert line["locations"] == ["a.md:x https://h.example/?api_key=***"]
    assert line["headers"] == {"Authorization": MASK, "Accept": "text/html"}
    assert line["cookie"] == MASK
    for secret in ("pw@", "abc123", "K9", "s3cr3t", "zzz"):
        assert secret not in stream.getvalue()


def test_console_on_tty_is_readable_and_redacted() -> None:
    """On a terminal "auto" renders console lines, with exceptions redacted and secrets scrubbed."""
    stream = FakeTTY()
    configure_logging(LogSettings(), run_id=5, stream=stream)
    try:
        raise ValueError("bad https://x.org/?sig=abcdef")
    except ValueError:
        get_logger().exception("run.failed", url="https://me:pw@x.org/")
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert not text.lstrip().startswith("{")
    assert "run.failed" in text and "run_id=5" in text and "ValueError" in text
    assert "abcdef" not in text and "me:pw" not in text


def test_json_format_forced_on_tty() -> None:
    """format="json" writes JSON lines even to a terminal."""
    stream = FakeTTY()
    configure_logging(LogSettings(format="json"), stream=stream)
    get_logger().info("x")
    assert json_lines(stream.getvalue())[0]["event"] == "x"


def test_file_sink_appends_json_and_stderr_can_be_off(tmp_path: Path) -> None:
    """The log file is appended to as JSON lines; with stderr off nothing else is written."""
    path = tmp_path / "monitor.log"
    path.write_text('{"event": "older"}\n', encoding="utf-8")
    stream = io.StringIO()
    configure_logging(LogSettings(file=str(path), stderr=False), run_id=9, stream=stream)
    get_logger().info("run.finished", checked=3)
    close_logging()
    lines = json_lines(path.read_text(encoding="utf-8"))
    assert [line["event"] for line in lines] == ["older", "run.finished"]
    assert lines[1]["run_id"] == 9 and stream.getvalue() == ""


def test_capture_logs_sees_event_names_and_keys() -> None:
    """Callers can assert emitted events and keys with structlog's capture_logs."""
    configured()
    with capture_logs() as logs:
        get_logger().info("host.down", host="d.org", count=3, sample=["u"])
    assert logs == [{"event": "host.down", "log_level": "info", "host": "d.org", "count": 3, "sample": ["u"]}]


REDACT = [
    ("https://user:pw@host.example/a", "https://***@host.example/a"),
    ("see ftp://anon@files.example/x and http://a:b@c/", "see ftp://***@files.example/x and http://***@c/"),
    ("https://host.example/a?x=1&access_token=abc&y=2", "https://host.example/a?x=1&access_token=***&y=2"),
    ("https://h/?API_KEY=abc#frag", "https://h/?API_KEY=***#frag"),
    ("https://h/?key=AIza&keyword=news", "https://h/?key=***&keyword=news"),
    (
        "https://h/?sig=1&signature=2&password=3&secret=4&auth=5",
        "https://h/?sig=***&signature=***&password=***&secret=***&auth=***",
    ),
    ("https://h/?apikey=a;token=b", "https://h/?apikey=***;token=***"),
    ("Authorization: Bearer abc.def", "Authorization: ***"),
    ("{'authorization': 'Basic Zm9v', 'accept': '*/*'}", "{'authorization': '***', 'accept': '*/*'}"),
    ("Cookie: a=1; b=2\nnext line", "Cookie: ***\nnext line"),
    ("https://host.example/path?page=2&q=token", "https://host.example/path?page=2&q=token"),
    ("no secrets here: user@example.com", "no secrets here: user@example.com"),
    ("https://***@h/?token=***", "https://***@h/?token=***"),
]


@pytest.mark.parametrize(("text", "expected"), REDACT)
def test_redact_text_table(text: str, expected: str) -> None:
    """Credentials, secret parameters and auth headers are masked and nothing else changes."""
    assert redact_text(text) == expected


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
def test_log_text_and_urls_mask_the_same_parameter_names(name: str) -> None:
    """One list: every secret parameter name is masked in log text and by redact_url alike."""
    url = f"https://h.example/x?page=2&{name}=s3cr3t"
    masked = f"https://h.example/x?page=2&{name}={MASK}"
    assert redact_text(f"fetching {url} failed") == f"fetching {masked} failed"
    assert redact_url(url) == masked


def test_events_table_is_well_formed() -> None:
    """Every documented event name is dotted lower-case and lists unique keys."""
    assert {"run.started", "link.broken", "host.down", "job.failed"} <= EVENTS.keys()
    for name, keys in EVENTS.items():
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name)
        assert len(keys) == len(set(keys))


def test_logging_after_close_skips_the_closed_file(tmp_path: Path) -> None:
    """An event logged after close_logging() is dropped for the closed file instead of raising."""
    path = tmp_path / "monitor.log"
    stream = io.StringIO()
    configure_logging(LogSettings(file=str(path)), stream=stream)
    close_logging()
    get_logger().info("run.interrupted")
    assert path.read_text(encoding="utf-8") == "" and "run.interrupted" in stream.getvalue()
