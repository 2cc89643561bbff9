"""The alert state machine over verdict sequences, and the pure event builders."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.alerts import (
    RECENT_MAX,
    AlertState,
    flag_for,
    flips,
    group_host_down,
    link_event,
    moved_event,
    size_mismatch_event,
    step,
)
from monitor.config import AlertSettings
from monitor.logs import EVENTS
from monitor.policy import DEFAULT_SEVERITY
from monitor.types import Judgement, Severity, Size, SizeCheck, Verdict

# One letter per run; f/u page (error), m/g are good, the rest are neutral under the defaults.
LETTERS = {
    "g": (Verdict.OK, Severity.IGNORE),
    "m": (Verdict.MOVED_PERMANENTLY, Severity.WARNING),
    "f": (Verdict.BROKEN, Severity.ERROR),
    "u": (Verdict.UNREACHABLE, Severity.ERROR),
    "t": (Verdict.TIMEOUT, Severity.WARNING),
    "b": (Verdict.BLOCKED, Severity.WARNING),
    "r": (Verdict.RATE_LIMITED, Severity.WARNING),
    "s": (Verdict.SKIPPED, Severity.IGNORE),
    "w": (Verdict.BROKEN, Severity.WARNING),
}
DEFAULTS = AlertSettings()


def run(
    runs: str, alert: AlertSettings = DEFAULTS, start: AlertState | None = None
) -> tuple[AlertState, str]:
    """Feed the runs; return the final state and transitions as 'B','R','F' or '.' per run."""
    state = start or AlertState()
    marks = []
    for letter in runs:
        state, transition = step(state, *LETTERS[letter], alert)
        marks.append({"broken": "B", "recovered": "R", "flapping": "F", None: "."}[transition])
    return state, "".join(marks)


TABLE = [
    ("quiet-when-healthy", "gggg", {}, "....", "ok"),
    ("broken-after-2", "ff", {}, ".B", "broken"),
    ("broken-once", "fffff", {}, ".B...", "broken"),
    ("single-failure-forgiven", "fgfg", {}, "....", "ok"),
    ("recovered-after-1", "ffg", {}, ".BR", "ok"),
    ("recovered-after-3", "ffggg", {"recover_after": 3}, ".B..R", "ok"),
    ("recovery-streak-reset", "ffggfggg", {"recover_after": 3}, ".B.....R", "ok"),
    ("alert-after-1", "f", {"alert_after": 1}, "B", "broken"),
    ("alert-after-3", "ffgfff", {"alert_after": 3}, ".....B", "broken"),
    ("unreachable-pages", "uu", {}, ".B", "broken"),
    ("moved-is-good", "ffm", {}, ".BR", "ok"),
    ("blocked-never-pages", "bbbbbbbbbb", {}, "..........", "ok"),
    ("timeout-never-pages", "tttttt", {}, "......", "ok"),
    ("rate-limited-never-pages", "rrrr", {}, "....", "ok"),
    ("warning-severity-never-pages", "wwww", {}, "....", "ok"),
    ("neutral-does-not-reset-streak", "ftf", {}, "..B", "broken"),
    ("neutral-does-not-recover", "ffbbbb", {}, ".B....", "broken"),
    ("skipped-is-neutral", "fsssf", {}, "....B", "broken"),
    ("neutral-inside-recovery", "ffgsgg", {"recover_after": 3}, ".B...R", "ok"),
    ("listed-but-warning-stays-quiet", "tt", {"page_on": [Verdict.TIMEOUT]}, "..", "ok"),
    ("flapping-once", "fgfgfgfgfg", {"alert_after": 1}, "BRBRF.....", "flapping"),
    ("flapping-without-alert", "fgfgfgfg", {}, "....F...", "flapping"),
    ("flapping-threshold-2", "fgf", {"flap_threshold": 2, "alert_after": 3}, "..F", "flapping"),
    (
        "flapping-settles-good",
        "fgfgf" + "g" * 10,
        {"flap_window": 10, "flap_threshold": 4},
        "....F" + "." * 9 + "R",
        "ok",
    ),
    (
        "flapping-settles-broken",
        "gfgfg" + "f" * 10,
        {"flap_window": 10, "flap_threshold": 4},
        "....F" + "." * 9 + "B",
        "broken",
    ),
    (
        "flapping-window-short-needs-streak",
        "fgf" + "f" * 4,
        {"flap_window": 3, "flap_threshold": 2, "alert_after": 5},
        "..F...B",
        "broken",
    ),
    (
        "flapping-again-after-settling",
        "fgfgf" + "g" * 5 + "fgfg",
        {"flap_window": 5, "flap_threshold": 4},
        "....F....R...F",
        "flapping",
    ),
    ("neutral-ignored-while-flapping", "fgfgfbbbbbb", {"flap_threshold": 4}, "....F......", "flapping"),
]


@pytest.mark.parametrize(
    ("runs", "overrides", "expected", "final"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE]
)
def test_state_machine_table(runs: str, overrides: dict[str, object], expected: str, final: str) -> None:
    """Each verdict sequence produces exactly the documented transitions and final state."""
    alert = AlertSettings(**overrides)
    state, marks = run(runs, alert)
    assert (marks, state.state) == (expected, final)


def test_counters_and_recent_window() -> None:
    """Streak counters count counted runs; ``recent`` keeps the newest flags within the window."""
    state, _ = run("gffbf", AlertSettings(flap_window=3))
    assert state == AlertState("broken", consecutive_failures=3, consecutive_successes=0, recent="fff")


def test_neutral_step_returns_previous_state_unchanged() -> None:
    """A neutral verdict returns the very same state and no transition."""
    prev = AlertState("broken", 4, 0, "ffff")
    assert step(prev, Verdict.BLOCKED, Severity.WARNING, DEFAULTS) == (prev, None)


def test_recent_is_capped_to_store_width() -> None:
    """The widest flap window the config allows keeps exactly RECENT_MAX flags; a wider one is refused."""
    state, _ = run("g" * (RECENT_MAX + 10), AlertSettings(flap_window=RECENT_MAX, flap_threshold=40))
    assert len(state.recent) == RECENT_MAX
    with pytest.raises(ValidationError):
        AlertSettings(flap_window=RECENT_MAX + 1)


def test_flag_for_follows_page_on_and_severity() -> None:
    """Good verdicts flag g, paging errors flag f, and the rest are neutral."""
    assert flag_for(Verdict.REDIRECTED, Severity.IGNORE, DEFAULTS) == "g"
    assert flag_for(Verdict.NOT_IMAGE, Severity.ERROR, DEFAULTS) == "f"
    assert flag_for(Verdict.INVALID_URL, Severity.ERROR, DEFAULTS) is None
    assert flag_for(Verdict.BROKEN, Severity.IGNORE, DEFAULTS) is None


VERDICTS = st.sampled_from(list(Verdict))
RUNS = st.lists(st.tuples(VERDICTS, st.sampled_from(list(Severity))), max_size=60)
ALERTS = st.builds(
    AlertSettings,
    alert_after=st.integers(1, 4),
    recover_after=st.integers(1, 4),
    flap_window=st.integers(2, 12),
    flap_threshold=st.integers(2, 6),
)


@settings(max_examples=150, deadline=None)
@given(runs=RUNS, alert=ALERTS)
def test_transition_properties(runs: list[tuple[Verdict, Severity]], alert: AlertSettings) -> None:
    """Alerts never repeat without a change in between, and recovery only follows an alert."""
    state = AlertState()
    seen: list[str] = []
    for verdict, severity in runs:
        prev = state
        state, transition = step(prev, verdict, severity, alert)
        if flag_for(verdict, severity, alert) is None:
            assert (state, transition) == (prev, None)
        if transition:
            seen.append(transition)
        assert len(state.recent) <= alert.flap_window
        assert state.state == {"broken": "broken", "recovered": "ok", "flapping": "flapping"}.get(
            transition or "", prev.state
        )
    for earlier, later in pairwise(seen):
        assert earlier != later, seen
    if seen:
        assert seen[0] != "recovered"


@settings(max_examples=100, deadline=None)
@given(runs=st.lists(st.sampled_from("fg"), max_size=40))
def test_failure_streak_matches_recent_tail(runs: list[str]) -> None:
    """With no neutral runs, the failure counter equals the trailing run of failures."""
    state, _ = run("".join(runs), AlertSettings(flap_window=50, flap_threshold=50))
    joined = "".join(runs)
    assert state.consecutive_failures == len(joined) - len(joined.rstrip("f"))
    assert flips(state.recent) == joined.count("fg") + joined.count("gf")


OCCURRENCES = [
    {"article": "b.md", "location": "image.url"},
    {"article": "a.md", "location": "webUrl"},
    {"article": "a.md", "location": "related[0].webUrl"},
]


def test_link_broken_event_carries_documented_keys() -> None:
    """link.broken lists sorted unique articles and article:location pairs."""
    state, transition = run("ff")[0], "broken"
    name, keys = link_event(
        transition,
        "https://x.org/a",
        judgement=Judgement(Verdict.BROKEN, Severity.ERROR, "HTTP 404"),
        state=state,
        settings=DEFAULTS,
        host="x.org",
        http_status=404,
        occurrences=OCCURRENCES,
        since="2024-05-01T02:30:00+00:00",
    )
    assert name == "link.broken" and list(keys) == EVENTS[name]
    assert keys["articles"] == ["a.md", "b.md"]
    assert keys["locations"] == ["a.md:related[0].webUrl", "a.md:webUrl", "b.md:image.url"]
    assert (keys["verdict"], keys["consecutive_failures"], keys["http_status"]) == ("broken", 2, 404)


def test_recovered_and_flapping_events() -> None:
    """link.recovered and link.flapping carry exactly their documented keys."""
    judgement = Judgement(Verdict.OK, Severity.IGNORE, "HTTP 200")
    flapping = AlertState("flapping", 0, 1, "fgfgfg")
    name, keys = link_event(
        "recovered",
        "u",
        judgement=judgement,
        state=AlertState(),
        settings=DEFAULTS,
        host="h",
        since=datetime(2024, 5, 1, tzinfo=UTC),
        down_for_runs=3,
    )
    assert (name, keys) == (
        "link.recovered",
        {"url": "u", "since": "2024-05-01T00:00:00+00:00", "down_for_runs": 3},
    )
    name, keys = link_event("flapping", "u", judgement=judgement, state=flapping, settings=DEFAULTS, host="h")
    assert (name, keys) == ("link.flapping", {"url": "u", "flips": 5, "window": 10})


def test_moved_and_size_mismatch_events() -> None:
    """link.moved and image.size_mismatch carry exactly their documented keys."""
    name, keys = moved_event("http://a/", "https://a/", OCCURRENCES[:1])
    assert name == "link.moved" and list(keys) == EVENTS[name] and keys["final_url"] == "https://a/"
    name, keys = size_mismatch_event(
        "u", "a.md", "image", Size(1200, 630), Size(1280, 720), SizeCheck.SIZE_MISMATCH
    )
    assert name == "image.size_mismatch" and list(keys) == EVENTS[name]
    assert (keys["declared"], keys["actual"], keys["check"]) == ("1200x630", "1280x720", "size_mismatch")


def broken(url: str, host: str) -> tuple[str, dict[str, object]]:
    return "link.broken", {"url": url, "host": host}


def test_group_host_down_collapses_at_threshold() -> None:
    """Three broken links of one host become one host.down in the first one's place."""
    events = [
        broken("https://d.org/3", "d.org"),
        ("link.moved", {"url": "m"}),
        broken("https://ok.org/1", "ok.org"),
        broken("https://d.org/1", "d.org"),
        broken("https://d.org/2", "d.org"),
    ]
    grouped = group_host_down(events, threshold=3, sample=2)
    assert grouped == [
        ("host.down", {"host": "d.org", "count": 3, "sample": ["https://d.org/1", "https://d.org/2"]}),
        ("link.moved", {"url": "m"}),
        broken("https://ok.org/1", "ok.org"),
    ]
    assert list(grouped[0][1]) == EVENTS["host.down"]


def test_group_host_down_below_threshold_is_identity() -> None:
    """Fewer broken links than the threshold pass through unchanged."""
    events = [broken("https://d.org/1", "d.org"), broken("https://d.org/2", "d.org")]
    assert group_host_down(events, threshold=3) == events


def test_default_page_on_has_error_severity() -> None:
    """Every verdict paged by default is an error by default, so defaults can page at all."""
    assert all(DEFAULT_SEVERITY[v] is Severity.ERROR for v in DEFAULTS.page_on)
