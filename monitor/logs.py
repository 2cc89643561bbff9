"""Structured logging, configured once at start-up: the event names below are an interface.

Every event carries ``timestamp`` (ISO-8601 UTC), ``level``, ``event`` and ``run_id`` (bound
per run through contextvars, None outside a run). Output goes to stderr and/or a file: JSON
lines when the sink is not a terminal or ``format="json"``, readable console lines on a TTY
(``format="auto"``) or with ``format="console"``. Secrets are scrubbed from every string value
and from exception text before anything is written, because logs leave the machine.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, FilteringBoundLogger, WrappedLogger

from monitor.config import LogSettings
from monitor.urls import SECRET_PARAMS

# Each fixed event name and the keys it carries (besides timestamp, level, event, run_id).
# Alert consumers match on these; add keys, never rename or drop one.
EVENTS: dict[str, list[str]] = {
    "run.started": ["run_id", "trigger", "targets", "config_fingerprint"],
    "run.finished": ["counts", "duration_s", "checked", "errors", "warnings"],
    "run.failed": ["error"],
    "run.interrupted": [],
    "run.abandoned": ["error", "by", "shards_cancelled", "jobs_cancelled"],
    "link.broken": [
        "url",
        "verdict",
        "reason",
        "http_status",
        "host",
        "articles",
        "locations",
        "since",
        "consecutive_failures",
    ],
    "link.recovered": ["url", "since", "down_for_runs"],
    "link.moved": ["url", "final_url", "articles", "locations"],
    "link.flapping": ["url", "flips", "window"],
    "image.size_mismatch": ["url", "article", "location", "declared", "actual", "check"],
    "corpus.error": ["path", "kind", "message", "line", "column"],
    "corpus.root_unavailable": ["path", "reason"],
    "host.down": ["host", "count", "sample"],
    "link.blocked": ["url", "host", "reason", "articles", "locations"],
    "link.title_mismatch": ["url", "host", "reason", "articles", "locations"],
    "host.blocked": ["host", "count", "sample", "reason"],
    "amp.not_cached": ["url", "host", "reason", "articles", "locations"],
    "amp.cache_flipped": ["host", "count", "sample", "reason"],
    "job.started": ["job"],
    "job.finished": ["job", "duration_s"],
    "job.skipped": ["job", "reason"],
    "job.failed": ["job", "error", "duration_s"],
    "archive.finished": ["endpoint", "looked_up", "found", "none", "failed", "left", "duration_s"],
    "archive.lookup_failed": ["url", "error"],
    "archive.unavailable": ["endpoint", "error", "skipped"],
    "metrics.write_failed": ["path", "error"],
    "metrics.listening": ["address", "port"],
    "fetch.made_up_url": ["url", "status", "failure"],
}

# The events that page someone (what monitor_alert_events counts), in catalogue order.
ALERT_EVENTS = (
    "link.broken",
    "link.recovered",
    "link.moved",
    "link.flapping",
    "host.down",
    "image.size_mismatch",
)

# logging.fields = "otel": native key -> OpenTelemetry semantic-convention name. ``host`` becomes
# ``server.address`` (and ``server.port`` when it has one), ``error`` becomes ``error.type`` (the
# exception class or the verdict) plus ``exception.message``; every event gains ``event.name``.
# Keys without a convention keep their native name.
OTEL_NAMES: dict[str, str] = {
    "url": "url.full",
    "http_status": "http.response.status_code",
    "host": "server.address",
    "path": "file.path",
    "error": "exception.message",
}
OTEL_ADDED = ("event.name",)
_HOST_PORT = re.compile(r"^(?P<address>\[[^\]]*\]|[^:\[\]]+):(?P<port>\d{1,5})$")
_ERROR_TYPE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): ")


def event_keys(name: str, fields: str = "native") -> list[str]:
    """The keys event ``name`` carries (besides timestamp, level, event) under a naming."""
    keys = EVENTS[name]
    if fields == "native":
        return list(keys)
    renamed = [OTEL_NAMES.get(k, k) for k in keys]
    if "error" in keys or "verdict" in keys:
        renamed.append("error.type")
    return [*renamed, *OTEL_ADDED]


def otel_fields(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: rename the keys that have an OpenTelemetry semantic-convention name."""
    out: EventDict = {}
    for key, value in event_dict.items():
        if key == "host" and isinstance(value, str) and (m := _HOST_PORT.match(value)):
            out["server.address"] = m["address"].strip("[]")
            out["server.port"] = int(m["port"])
        elif key == "error" and isinstance(value, str):
            out["exception.message"] = value
            m = _ERROR_TYPE.match(value)
            out["error.type"] = m["type"] if m else "error"
        else:
            out[OTEL_NAMES.get(key, key)] = value
    if "verdict" in out and "error.type" not in out:
        out["error.type"] = out["verdict"]
    out["event.name"] = out.get("event")
    return out


MASK = "***"
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
# Mapping keys whose whole value is masked (headers dicts, settings dumps).
SECRET_KEYS = frozenset({*SECRET_HEADERS, "password", "secret", "token", "access_token", "api_key", "apikey"})

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s@]+(?:@[^/?#\s@]*)*@")
_PARAM = re.compile(
    r"(?P<name>[?&;](?:"
    + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS, key=len, reverse=True))
    + r")=)[^&#;\s\"'<>]+",
    re.IGNORECASE,
)
_HEADER = re.compile(
    r"(?P<name>\b(?:"
    + "|".join(re.escape(h) for h in SECRET_HEADERS)
    + r")[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]+",
    re.IGNORECASE,
)

_open_files: list[TextIO] = []


def redact_text(text: str) -> str:
    """Mask URL credentials, secret query parameters and Authorization/Cookie header values."""
    if "://" in text:
        text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    if "=" in text:
        text = _PARAM.sub(rf"\g<name>{MASK}", text)
    return _HEADER.sub(rf"\g<name>{MASK}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: MASK if str(key).lower() in SECRET_KEYS else _redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: scrub secrets from every string value, nested included."""
    return {
        key: MASK if key.lower() in SECRET_KEYS else (value if key == "exc_info" else _redact_value(value))
        for key, value in event_dict.items()
    }


def _ensure_run_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("run_id", None)
    return event_dict


def _plain_redacted_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """Console exceptions: a plain traceback, redacted (rich tracebacks would print locals)."""
    sio.write("\n" + redact_text("".join(traceback.format_exception(*exc_info))))


Renderer = Callable[[WrappedLogger, str, EventDict], str]


def _json_renderer() -> Renderer:
    # No locals in tracebacks: they are noise and the likeliest place for a secret to hide.
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    render = structlog.processors.JSONRenderer(default=str)

    def json_line(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        return str(render(logger, name, redact(logger, name, tracebacks(logger, name, event_dict))))

    return json_line


def _console_renderer(colors: bool) -> Renderer:
    render = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_plain_redacted_traceback)

    def console_line(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        return str(render(logger, name, event_dict))

    return console_line


class _FanOut:
    """Wrapped logger: renders each event once per sink (JSON or console) and writes a line."""

    def __init__(self, sinks: list[tuple[TextIO, Renderer]]) -> None:
        self._sinks = sinks

    def msg(self, **event_dict: Any) -> None:
        name = str(event_dict.get("level", "info"))
        for stream, render in self._sinks:
            if stream.closed:  # after close_logging() at exit
                continue
            stream.write(render(self, name, dict(event_dict)) + "\n")
            stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _renderer_for(stream: TextIO, fmt: str) -> Renderer:
    tty = _is_tty(stream)
    if fmt == "json" or (fmt == "auto" and not tty):
        return _json_renderer()
    return _console_renderer(colors=tty)


def close_logging() -> None:
    """Close the log file opened by ``configure_logging`` (at exit, or before reconfiguring)."""
    while _open_files:
        _open_files.pop().close()


def configure_logging(
    settings: LogSettings, *, run_id: int | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for the whole process; ``stream`` replaces stderr (tests, embedding)."""
    close_logging()
    sinks: list[tuple[TextIO, Renderer]] = []
    if settings.stderr:
        out = stream if stream is not None else sys.stderr
        sinks.append((out, _renderer_for(out, settings.format)))
    if settings.file:
        handle = open(settings.file, "a", encoding="utf-8")  # noqa: SIM115 - lives until close_logging
        _open_files.append(handle)
        sinks.append((handle, _renderer_for(handle, settings.format)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _ensure_run_id,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            *([otel_fields] if settings.fields == "otel" else []),
            redact,  # last: its dict reaches ``_FanOut.msg`` as keyword arguments
        ],
        wrapper_class=structlog.make_filtering_bound_logger(settings.level),
        logger_factory=lambda *_: _FanOut(sinks),
        cache_logger_on_first_use=False,
    )
    if run_id is not None:
        bind_run(run_id)


def bind_run(run_id: int | None) -> None:
    """Attach ``run_id`` to every following event of this context (task, thread)."""
    structlog.contextvars.bind_contextvars(run_id=run_id)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A logger; ``name`` (usually the module) is added as the ``logger`` key."""
    logger = structlog.get_logger()
    return logger.bind(logger=name) if name else logger
