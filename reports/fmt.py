"""Wording and value formatting shared by the renderers, so every format says the same thing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

from monitor.types import ArchiveSnapshot, Size
from reports.model import AckInfo, ChangesSection, ImagesSection, UrlItem, UrlList

IMAGE_LISTS: tuple[tuple[str, str], ...] = (
    ("size_mismatch", "Size mismatch (declared size has another aspect ratio)"),
    ("scaled", "Scaled (declared size differs, same aspect ratio)"),
    ("not_image", "Not an image"),
    ("image_unreadable", "Unreadable image"),
    ("placeholder", "Placeholder image (same bytes as other image URLs of the host)"),
)
SIZE_REASONS: dict[str, str] = {
    "size_mismatch": "declared size has another aspect ratio than the image",
    "scaled": "declared size differs from the image, same aspect ratio",
}
CHANGE_LISTS: tuple[tuple[str, str], ...] = (
    ("newly_broken", "Newly broken"),
    ("recovered", "Recovered"),
    ("still_broken", "Still broken"),
    ("flapping", "Flapping"),
    ("newly_mismatched", "Newly mismatched images"),
)


def relative(path: str, roots: tuple[str, ...] | None) -> str:
    """``path`` relative to the run's root it lies under (the deepest), for editors who think in the
    corpus, not the server's file system; unchanged when the run has no roots or none matches.
    With several roots the root's last name stays in front, so two roots' ``index.md`` differ."""
    best = ""
    for root in roots or ():
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if not best:
        return path
    rest = path[len(best) :]
    if roots is not None and len(roots) > 1:
        return best.rstrip("/").rsplit("/", 1)[-1] + "/" + rest
    return rest


HINTS: dict[str, str] = {
    "moved_permanently": "update to the final URL",
    "broken": "remove or replace the link",
    "soft_404": "remove or replace the link",
    "not_image": "replace the image",
    "image_unreadable": "replace the image",
    "title_mismatch": "check the link still points at the story",
}


def hint(verdict: str, size_check: str | None = None, actual: Size | None = None) -> str:
    """The one-line "what to do" for a problem (empty when the editor has nothing to fix): an image
    place whose declared size has another aspect ratio gets the real size to write in."""
    if size_check == "size_mismatch":
        return f"fix the declared size to {actual}" if actual is not None else "fix the declared size"
    return HINTS.get(verdict, "")


def archived(copy: ArchiveSnapshot | None) -> str:
    """The suggestion for a dead page the archive keeps a copy of; empty without one."""
    return f"archived copy: {copy.url} ({copy.captured})" if copy else ""


def when(moment: datetime | None) -> str:
    """A UTC timestamp to the second; empty when unknown."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unfinished"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def dims(value: Size | None) -> str:
    return "" if value is None else str(value)


def is_web_url(url: str | None) -> bool:
    """Only http(s) URLs with a host become links; anything else (javascript:, data:, files) stays text."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def since(item: UrlItem) -> str:
    return when(item.failing_since)


def status(item: UrlItem) -> str:
    return "" if item.http_status is None else str(item.http_status)


def image_lists(section: ImagesSection) -> Iterator[tuple[str, str, UrlList]]:
    for key, title in IMAGE_LISTS:
        yield key, title, getattr(section, key)


def change_lists(section: ChangesSection) -> Iterator[tuple[str, str, UrlList]]:
    for key, title in CHANGE_LISTS:
        yield key, title, getattr(section, key)


def ack(info: AckInfo | None) -> str:
    """An acknowledgement in one line: why, who, since and until when."""
    if info is None:
        return ""
    until = f"until {when(info.until)}" if info.until else "until it recovers"
    return f"{info.reason} (by {info.by}, {when(info.at)}, {until})"


def more(omitted: int, what: str) -> str:
    """The line a renderer prints when a capped list left items out."""
    return f"{omitted} more {what} not listed (raise the report limit to see them)."


def verdict_counts(counts: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts)
