"""Every command's --help, rendered as a user sees it: no word lost to markup, no empty bracket, no
doubled space inside a sentence, no type placeholder such as ``<bool>``, boolean flags as pairs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from monitor import __version__
from monitor.cli import app

runner = CliRunner()
EMPTY_BRACKET = re.compile(r"\[\s*\]|\(\s*\)|\{\s*\}|<\s*>")
DOUBLED_SPACE = re.compile(r"[a-z,;:]  +[a-z]")  # column gaps precede a capital or follow a metavar
OPTION_PLACEHOLDER = re.compile(r"^\s+(-\w, )?--\S+.*<[a-z][^>]*>")  # e.g. "--output <path>"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_tree_has_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"check", "links", "export", "report", "schedule", "runs", "db upgrade"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "monitor" for p, _ in COMMANDS])
def test_help_renders_cleanly(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "<bool>" not in out
    for line in out.splitlines():
        assert not EMPTY_BRACKET.search(line), line
        assert not DOUBLED_SPACE.search(line.strip()), line
        assert not OPTION_PLACEHOLDER.search(line), line
    # nothing eaten: every paragraph of the command's help and every option's help is there verbatim
    flat = _flat(out)
    for paragraph in (command.help or "").split("\n\n"):
        assert _flat(paragraph) in flat, paragraph
    for param in command.params:
        if getattr(param, "help", None):
            assert _flat(param.help) in flat, param.help
        if getattr(param, "is_flag", False) and not param.is_eager and param.name != "help":
            assert param.secondary_opts, f"{param.opts[0]} should be written --flag/--no-flag"


def test_bracketed_names_survive() -> None:
    """The issue's examples: rich markup used to eat [distributed] and [jobs.*]."""
    check = _flat(runner.invoke(app, ["check", "--help"], terminal_width=100).stdout)
    assert "With [distributed] enabled the run" in check
    schedule = _flat(runner.invoke(app, ["schedule", "--help"], terminal_width=100).stdout)
    assert "in the foreground: [jobs.*] on their schedules" in schedule


def test_version_is_eager_and_exits_0() -> None:
    """--version prints and exits before anything else is parsed, as click's version option does."""
    for args in (["--version"], ["--version", "check", "--no-such-flag"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout == f"link-media-monitor {__version__}\n"


def test_a_negated_flag_is_accepted() -> None:
    """The --no-… half of a pair parses (here with --help, so nothing runs)."""
    result = runner.invoke(app, ["history", "--no-json", "--help"])
    assert result.exit_code == 0, result.output
