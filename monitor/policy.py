"""Verdict policy settings (``[verdicts]``): severities per verdict, role and host, what counts as a
removed page (soft 404s) and as another story (title drift). Read by the pure ``verdict`` stage."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from monitor.sections import Section
from monitor.types import Role, Severity, Verdict

SOFT_MARKERS = ["404", "410", "not-found", "notfound", "page-not-found", "pagenotfound", "error", "error404"]


class Soft404Rules(Section):
    """Which redirects count as a removed page (README "Soft 404s"); each rule can be switched off."""

    enabled: bool = True
    root: bool = True  # a redirect to the site root (or /index.html, /home)
    section_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.5  # 0 switches the section rule off
    markers: list[str] = SOFT_MARKERS  # whole path segments (or query values) that say "not found"
    probe: bool = True  # made-up URL answers 200: read pages (GET, to body_limit), compare with it
    body_limit: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    similarity: Annotated[float, Field(gt=0, le=1)] = 0.9  # estimated Jaccard of 3-word shingles
    baseline_ttl_hours: Annotated[float, Field(ge=0)] = 24.0  # a younger stored probe is reused


class Soft404Settings(Soft404Rules):
    """The rules, and per-host tables whose keys replace the global ones for that host."""

    hosts: dict[str, Soft404Rules] = {}

    def for_host(self, host: str) -> Soft404Rules:
        """The rules for ``host``: its own table or its nearest listed parent domain's, over the global."""
        name = host.lower().rstrip(".")
        lowered = {key.lower().rstrip("."): value for key, value in self.hosts.items()}
        while name:
            if name in lowered:
                own = lowered[name]
                return Soft404Rules(
                    **{**self.model_dump(exclude={"hosts"}), **own.model_dump(include=own.model_fields_set)}
                )
            _, _, name = name.partition(".")
        return self


class TitleRules(Section):
    """Title drift (README "Title drift"): a page body read anyway whose title is not the article's."""

    enabled: bool = True
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.3  # token Jaccard below this: title_mismatch


class VerdictPolicy(Section):
    """How verdicts count; ``roles`` and ``hosts`` override ``severity`` per role or host."""

    accept_statuses: list[Annotated[int, Field(ge=100, le=999)]] = []
    severity: dict[Verdict, Severity] = Field(default_factory=lambda: dict(DEFAULT_SEVERITY))

    @field_validator("severity")
    @classmethod
    def _fill_defaults(cls, value: dict[Verdict, Severity]) -> dict[Verdict, Severity]:
        """A partial table in the file overrides only the verdicts it names."""
        return {**DEFAULT_SEVERITY, **value}

    roles: dict[Role, dict[Verdict, Severity]] = {
        Role.CDN_AMP: {
            Verdict.BROKEN: Severity.WARNING,
            Verdict.MOVED_PERMANENTLY: Severity.IGNORE,
        }
    }
    hosts: dict[str, dict[Verdict, Severity]] = {}
    soft_404: Soft404Settings = Soft404Settings()
    title: TitleRules = TitleRules()


DEFAULT_SEVERITY: dict[Verdict, Severity] = {
    Verdict.OK: Severity.IGNORE,
    Verdict.REDIRECTED: Severity.IGNORE,
    Verdict.MOVED_PERMANENTLY: Severity.WARNING,
    Verdict.BROKEN: Severity.ERROR,
    Verdict.SOFT_404: Severity.ERROR,
    Verdict.AMP_RETIRED: Severity.IGNORE,
    Verdict.AMP_NOT_CACHED: Severity.IGNORE,
    Verdict.TIMEOUT: Severity.WARNING,
    Verdict.UNREACHABLE: Severity.ERROR,
    Verdict.RATE_LIMITED: Severity.WARNING,
    Verdict.BLOCKED: Severity.WARNING,
    Verdict.NOT_IMAGE: Severity.ERROR,
    Verdict.IMAGE_UNREADABLE: Severity.ERROR,
    Verdict.INVALID_URL: Severity.ERROR,
    Verdict.SKIPPED: Severity.IGNORE,
    Verdict.TITLE_MISMATCH: Severity.WARNING,
}
