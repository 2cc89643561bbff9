"""Docs cannot drift: every command, setting section, verdict and log event is in the README."""

from __future__ import annotations

from pathlib import Path

import typer.main

from monitor.cli import app
from monitor.config import Settings
from monitor.logs import EVENTS
from monitor.types import SizeCheck, Verdict

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands() -> set[str]:
    group = typer.main.get_command(app)
    names = set()
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names |= {f"{name} {s}" for s in sub} if sub else {name}
    return names


def test_every_command_is_documented() -> None:
    """Each CLI command (and sub-command) appears as `monitor <name>` in the README."""
    missing = {c for c in _commands() if f"monitor {c}" not in README}
    assert not missing, f"undocumented commands: {sorted(missing)}"


def test_every_settings_section_is_documented() -> None:
    """Each top-level settings section appears in the configuration reference."""
    missing = {n for n in Settings.model_fields if n != "database_url" and f"[{n}]" not in README}
    assert not missing and "database_url" in README, f"undocumented sections: {sorted(missing)}"


def test_every_verdict_and_size_check_is_documented() -> None:
    """The verdict and size-check vocabularies are listed in the README."""
    words = [v.value for v in Verdict] + [c.value for c in SizeCheck]
    assert not [w for w in words if f"`{w}`" not in README]


def test_every_log_event_is_documented() -> None:
    """Each fixed event name is in the README's log event table with its keys."""
    missing = [name for name in EVENTS if f"`{name}`" not in README]
    assert not missing, f"undocumented events: {missing}"
    keys = {k for ks in EVENTS.values() for k in ks}
    assert not [k for k in keys if f"`{k}`" not in README]
