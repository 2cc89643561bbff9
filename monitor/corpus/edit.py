"""Edit frontmatter values in place: only the bytes of the changed scalars change.

``monitor fix`` must leave comments, key order, quoting, the body and line endings exactly
as they were, so the YAML is never dumped again: the frontmatter is composed (libyaml's node
graph, which knows where each scalar starts and ends), each edited scalar's span is replaced
by the new value written in the same style (plain, 'single' or "double" quoted), and the
result is parsed again to prove that exactly the edited values changed. An edit that cannot
be made that way (a block scalar, a value spread over lines, a key that is missing, a value
that is not what the run saw) is refused with a reason, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_OPENING = re.compile(r"\A\ufeff?-{3,}[ \t]*\r?\n")
_CLOSING = re.compile(r"\r?\n-{3,}[ \t]*(?=\r?\n|\Z)")
_STEP = re.compile(r"([^.\[\]<>]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class FieldEdit:
    """Set the scalar at ``location`` (``related[1].images[0].url``) from ``old`` to ``new``."""

    location: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class EditResult:
    """The file's new bytes (equal to the old ones when nothing applied) and what was refused why."""

    data: bytes
    applied: tuple[FieldEdit, ...]
    refused: tuple[tuple[FieldEdit, str], ...]


class EditError(Exception):
    """The file cannot be edited at all (not UTF-8, no frontmatter, YAML that does not compose)."""


def path_steps(location: str) -> list[str | int] | None:
    """``a[1].b`` → ``["a", 1, "b"]``; None for places that are not a frontmatter path (body, HTML)."""
    if location.startswith("body") or "<" in location:
        return None
    steps: list[str | int] = []
    pos = 0
    for match in _STEP.finditer(location):
        if match.start() != pos and location[pos : match.start()] != ".":
            return None
        steps.append(match[1] if match[1] is not None else int(match[2]))
        pos = match.end()
    return steps if steps and pos == len(location) else None


def _find(root: Node, steps: Sequence[str | int]) -> Node | None:
    node: Node | None = root
    for step in steps:
        if isinstance(step, int) and isinstance(node, SequenceNode):
            node = node.value[step] if step < len(node.value) else None
        elif isinstance(step, str) and isinstance(node, MappingNode):
            found = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == step]
            node = found[-1] if found else None  # a repeated key: the last one wins, as when loading
        else:
            return None
        if node is None:
            return None
    return node


def _render(node: ScalarNode, new: str) -> str | None:
    """``new`` written in the scalar's own style, or None when that style cannot hold it."""
    if any(ch in new for ch in "\r\n\t") or not new.isprintable():
        return None
    if node.style == "'":
        return "'" + new.replace("'", "''") + "'"
    if node.style == '"':
        return '"' + new.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if node.style not in (None, ""):
        return None  # literal or folded block scalars
    try:
        plain = yaml.safe_load("k: " + new)
    except yaml.YAMLError:
        plain = None
    try:
        old_kind = type(yaml.safe_load("k: " + node.value)["k"]) if node.value else str
    except (yaml.YAMLError, TypeError):
        return None
    if (
        isinstance(plain, dict)
        and list(plain) == ["k"]
        and str(plain["k"]) == new
        and type(plain["k"]) is old_kind
    ):
        return new
    return '"' + new.replace("\\", "\\\\").replace('"', '\\"') + '"' if old_kind is str else None


def _load(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)  # libyaml's safe loader


def _set(tree: Any, steps: Sequence[str | int], value: object) -> None:
    for step in steps[:-1]:
        tree = tree[step]
    tree[steps[-1]] = value


def edit_frontmatter(data: bytes, edits: Sequence[FieldEdit]) -> EditResult:
    """Apply ``edits`` to the frontmatter of ``data``; every other byte stays as it was."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    opening = _OPENING.match(text)
    closing = _CLOSING.search(text, opening.end() - 1) if opening else None
    if opening is None or closing is None:
        raise EditError("no closed '---' frontmatter block")
    start, fm = opening.end(), text[opening.end() : closing.start()]
    try:
        root = yaml.compose(fm, Loader=yaml.CSafeLoader)
        before = _load(fm)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise EditError(f"the frontmatter does not parse: {type(exc).__name__}") from None
    spans: list[tuple[int, int, str, FieldEdit]] = []
    refused: list[tuple[FieldEdit, str]] = []
    for edit in edits:
        steps = path_steps(edit.location)
        node = _find(root, steps) if steps is not None and root is not None else None
        if steps is None or node is None:
            refused.append((edit, "not a frontmatter field here"))
        elif not isinstance(node, ScalarNode) or node.start_mark.line != node.end_mark.line:
            refused.append((edit, "not a one-line value"))
        elif node.value != edit.old:
            refused.append((edit, f"the value is {node.value!r} now, not {edit.old!r}"))
        elif (rendered := _render(node, edit.new)) is None:
            refused.append((edit, "the new value cannot be written in this field's style"))
        else:
            spans.append((start + node.start_mark.index, start + node.end_mark.index, rendered, edit))
    spans.sort(key=lambda span: span[0])
    if any(a[1] > b[0] for a, b in pairwise(spans)):
        raise EditError("two edits of the same value")
    for lo, hi, rendered, _edit in reversed(spans):
        text = text[:lo] + rendered + text[hi:]
    applied = tuple(span[3] for span in spans)
    if applied:
        after = _load(text[start : _CLOSING.search(text, start - 1).start()])  # type: ignore[union-attr]
        for edit in applied:
            steps = path_steps(edit.location) or []
            _set(before, steps, type(_get(before, steps))(edit.new))
        if after != before:  # a guard: the edit must change exactly the edited values
            raise EditError("editing in place would change other values; nothing written")
    return EditResult(text.encode("utf-8"), applied, tuple(refused))


def _get(tree: Any, steps: Sequence[str | int]) -> Any:
    for step in steps:
        tree = tree[step]
    return tree
