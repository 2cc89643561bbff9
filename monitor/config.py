"""Settings: one typed, validated object built once at start-up.

Precedence (highest first): CLI flags, ``MONITOR_*`` environment variables
(nested keys with ``__``, e.g. ``MONITOR_HTTP__CONCURRENCY=32``), the TOML file,
then the defaults below. Unknown keys, wrong types and out-of-range values stop
start-up with a ``ConfigError`` that names the key and the file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tomllib
from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor import __version__
from monitor.policy import VerdictPolicy
from monitor.sections import NonNegFloat, PositiveFloat, PositiveInt, Section
from monitor.types import Role, Verdict

DEFAULT_CONFIG_FILE = "config.toml"
DEFAULT_DATABASE_URL = "sqlite:///monitor.db"
DEFAULT_USER_AGENT = f"link-media-monitor/{__version__} (+https://github.com/link-media-monitor)"
DEFAULT_AMP_CACHE_TEMPLATE = "https://{subdomain}.cdn.ampproject.org/c/{s}{host}{path}"
DEFAULT_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class ConfigError(Exception):
    """A setting is unknown, mistyped or out of range; the message names key and file."""


class CorpusSettings(Section):
    roots: list[str] = ["examples"]
    include: list[str] = ["**/*.md", "**/*.markdown"]
    exclude: list[str] = []
    max_file_bytes: PositiveInt = 2 * 1024 * 1024
    max_url_length: Annotated[int, Field(ge=16, le=65536)] = 2048
    amp_cache_template: str = DEFAULT_AMP_CACHE_TEMPLATE

    @field_validator("amp_cache_template")
    @classmethod
    def _template_ok(cls, value: str) -> str:
        allowed = {"subdomain", "s", "host", "path"}
        names = set(re.findall(r"{(\w*)}", value))
        if not names <= allowed or "path" not in names:
            raise ValueError(f"placeholders must be among {sorted(allowed)} and include {{path}}")
        return value


class RemapRule(Section):
    pattern: str
    replacement: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class IgnoreRule(Section):
    """A URL that must not be checked at all (verdict ``skipped``, never requested).

    ``url`` and ``host`` are shell-style globs (``*``, ``?``, ``[..]``) matched against the
    normalised URL and its host; when both are set both must match. ``until`` (a date) ends the
    rule after that day (UTC), so a temporary exception cannot outlive its reason.
    """

    name: str | None = None
    url: str | None = None
    host: str | None = None
    until: date | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _has_pattern(self) -> IgnoreRule:
        if not self.url and not self.host:
            raise ValueError("an ignore rule needs a url or a host pattern")
        return self

    def matches(self, url: str, host: str, today: date) -> bool:
        if self.until is not None and today > self.until:
            return False
        if self.host and not fnmatchcase(host.lower(), self.host.lower()):
            return False
        return not self.url or fnmatchcase(url, self.url)

    def describe(self, index: int) -> str:
        """How a skipped result names the rule: its name (or position) and its patterns."""
        label = self.name or f"ignore[{index}]"
        parts = [f"url {self.url}" if self.url else "", f"host {self.host}" if self.host else ""]
        text = f"ignored by rule {label!r} ({', '.join(p for p in parts if p)})"
        return f"{text}: {self.reason}" if self.reason else text


class HostSettings(Section):
    """Per-host overrides; unset fields fall back to [http]."""

    concurrency: PositiveInt | None = None
    min_interval_ms: Annotated[int, Field(ge=0)] | None = None
    headers: dict[str, str] = {}
    user_agent: str | None = None
    total_timeout: PositiveFloat | None = None


class HttpSettings(Section):
    user_agent: str = DEFAULT_USER_AGENT
    headers: dict[str, str] = {}
    concurrency: Annotated[int, Field(gt=0, le=10000)] = 128
    per_host_concurrency: Annotated[int, Field(gt=0, le=1000)] = 8
    processes: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    min_interval_ms: Annotated[int, Field(ge=0, le=600_000)] = 0
    connect_timeout: PositiveFloat = 10.0
    read_timeout: PositiveFloat = 20.0
    total_timeout: PositiveFloat = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    backoff_base: NonNegFloat = 0.5
    backoff_max: NonNegFloat = 30.0
    retry_after_cap: NonNegFloat = 60.0
    retry_statuses: list[Annotated[int, Field(ge=100, le=999)]] = list(DEFAULT_RETRY_STATUSES)
    max_redirects: Annotated[int, Field(ge=0, le=50)] = 10
    page_body_cap: Annotated[int, Field(ge=0)] = 64 * 1024
    image_byte_cap: Annotated[int, Field(ge=1024)] = 512 * 1024
    image_range_request: bool = True
    max_header_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    conditional_requests: bool = True
    verify_tls: bool = True
    http2: bool = False
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    proxy: str | None = None
    remap: list[RemapRule] = []
    hosts: dict[str, HostSettings] = {}


class SafetySettings(Section):
    allow_private: bool = False
    allow_hosts: list[str] = []
    allow_cidrs: list[str] = []
    trust_proxy_dns: bool = False

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network: {exc}") from exc
        return value


class ImageSettings(Section):
    tolerance_px: Annotated[int, Field(ge=0)] = 0
    aspect_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    placeholder_min_uses: Annotated[int, Field(ge=0)] = 3  # same bytes at N URLs/articles of a host; 0: off


class AlertSettings(Section):
    alert_after: Annotated[int, Field(ge=1, le=100)] = 2
    recover_after: Annotated[int, Field(ge=1, le=100)] = 1
    flap_window: Annotated[int, Field(ge=2, le=64)] = 10  # url.recent holds at most 64 flags
    flap_threshold: Annotated[int, Field(ge=2, le=64)] = 4
    host_down_threshold: Annotated[int, Field(ge=1)] = 20
    page_on: list[Verdict] = [
        Verdict.BROKEN,
        Verdict.SOFT_404,
        Verdict.UNREACHABLE,
        Verdict.NOT_IMAGE,
        Verdict.IMAGE_UNREADABLE,
    ]


class LogSettings(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: str | None = None
    stderr: bool = True
    fields: Literal["native", "otel"] = "native"


class ReportSettings(Section):
    folder: str = "reports-out"
    file_pattern: str = "report-{run_id}-{date}"
    formats: list[Literal["html", "json", "markdown", "csv"]] = ["html", "json"]
    trend_runs: Annotated[int, Field(ge=1, le=1000)] = 30


class NightlyJob(Section):
    enabled: bool = True
    cron: str = "30 2 * * *"
    timezone: str = "UTC"
    max_age_hours: NonNegFloat = 26.0  # `monitor status` exits 3 when the last success is older; 0: off


class RecheckJob(Section):
    enabled: bool = True
    interval_minutes: Annotated[int, Field(ge=1)] = 60


class PruneJob(Section):
    enabled: bool = True
    cron: str = "15 4 * * *"
    timezone: str = "UTC"
    retention_days: Annotated[int, Field(ge=1)] = 90
    batch_size: Annotated[int, Field(ge=100)] = 5000


class JobSettings(Section):
    nightly_check: NightlyJob = NightlyJob()
    recheck_failing: RecheckJob = RecheckJob()
    prune_history: PruneJob = PruneJob()
    misfire_grace_seconds: Annotated[int, Field(ge=1)] = 6 * 3600
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    lock_ttl_seconds: Annotated[int, Field(ge=10)] = 300
    stale_after_days: dict[Role, Annotated[int, Field(ge=1)]] = {}


class MetricsSettings(Section):
    """Prometheus metrics: a textfile-collector file per run, and the daemon's HTTP endpoint."""

    textfile: str | None = None
    listen: bool = False
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    top_hosts: Annotated[int, Field(ge=0, le=1000)] = 10


class ArchiveSettings(Section):
    enabled: bool = False  # opt-in: each lookup tells a third party (archive.org) that a link is dead
    endpoint: str = "https://archive.org"  # or a self-hosted pywb (it serves /wayback/available too)
    ttl_hours: Annotated[float, Field(gt=0)] = 168.0  # a found copy and a "none found" are kept this long
    rate_per_s: Annotated[float, Field(gt=0, le=100)] = 1.0
    concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    timeout_s: PositiveFloat = 15.0
    max_per_run: Annotated[int, Field(ge=0)] = 500  # lookups per run; the rest wait for the next run


class DistributedSettings(Section):
    enabled: bool = False
    queue: str = "link-media-monitor"
    shard_size: Annotated[int, Field(ge=1)] = 2000
    host_split_threshold: Annotated[int, Field(ge=1)] = 10000
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 10.0
    stall_seconds: Annotated[float, Field(gt=0)] = 120.0
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5

    @model_validator(mode="after")
    def _stall_after_heartbeat(self) -> DistributedSettings:
        if self.stall_seconds <= self.heartbeat_seconds:
            raise ValueError("stall_seconds must be greater than heartbeat_seconds")
        return self


class Settings(BaseSettings):
    """All settings; see config.toml for every key with its default and meaning."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="MONITOR_", env_nested_delimiter="__"
    )

    database_url: str = DEFAULT_DATABASE_URL
    corpus: CorpusSettings = CorpusSettings()
    http: HttpSettings = HttpSettings()
    safety: SafetySettings = SafetySettings()
    verdicts: VerdictPolicy = VerdictPolicy()
    images: ImageSettings = ImageSettings()
    alerts: AlertSettings = AlertSettings()
    logging: LogSettings = LogSettings()
    reports: ReportSettings = ReportSettings()
    jobs: JobSettings = JobSettings()
    distributed: DistributedSettings = DistributedSettings()
    metrics: MetricsSettings = MetricsSettings()
    archive: ArchiveSettings = ArchiveSettings()
    ignore: list[IgnoreRule] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI (init kwargs) > environment > file data (passed as defaults via _file_data).
        return (init_settings, env_settings, _FileSource(settings_cls))

    def fingerprint(self) -> str:
        """A short stable hash of the settings that change what a check finds."""
        relevant = self.model_dump(
            mode="json", include={"http", "safety", "verdicts", "images", "corpus", "ignore"}
        )
        relevant.get("http", {}).pop("headers", None)  # secrets must not shape stored values
        for host in relevant.get("http", {}).get("hosts", {}).values():
            host.pop("headers", None)
        blob = json.dumps(relevant, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


_FILE_DATA: dict[str, Any] = {}


class _FileSource(PydanticBaseSettingsSource):
    """Feeds the parsed TOML document; set by ``load_settings`` before validation."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_DATA.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA)


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {key}: {msg}")
    return "; ".join(lines)


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``path`` (default ``config.toml`` when it exists), apply env and CLI overrides, validate."""
    global _FILE_DATA
    explicit = path is not None
    file = Path(path if path is not None else os.environ.get("MONITOR_CONFIG", DEFAULT_CONFIG_FILE))
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    elif explicit:
        raise ConfigError(f"{file}: no such config file")
    _FILE_DATA = data
    try:
        return Settings(**_nested(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, f"{file} (or MONITOR_* environment / CLI flag)")) from None
    finally:
        _FILE_DATA = {}


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"http.concurrency": 4}`` into ``{"http": {"concurrency": 4}}``, dropping ``None`` values."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
