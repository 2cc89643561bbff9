"""One run in several local processes (``http.processes``): same results, same politeness, clean stops."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from monitor.config import HttpSettings
from monitor.run.processes import MIN_TARGETS, process_count, split_hosts
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, RunRow, UrlRow
from tests.server import FixtureServer

ROOT = Path(__file__).resolve().parent.parent
HOSTS = 4
PER_HOST = 2


def test_split_hosts_puts_every_host_in_one_group_and_balances_counts() -> None:
    counts = {f"h{i}": n for i, n in enumerate([50, 40, 30, 20, 10, 10, 5, 5, 1])}
    groups = split_hosts(counts, 3)
    flat = [host for group in groups for host in group]
    assert sorted(flat) == sorted(counts) and len(flat) == len(set(flat))
    loads = [sum(counts[h] for h in group) for group in groups]
    assert len(groups) == 3 and max(loads) - min(loads) <= max(counts.values())
    assert split_hosts({"only": 10}, 4) == [["only"]]  # never more groups than hosts
    assert split_hosts({}, 4) == []


def test_process_count_auto_and_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    auto = HttpSettings()
    assert process_count(auto, MIN_TARGETS - 1) == 1  # small runs: a child's start-up is not worth it
    assert process_count(auto, MIN_TARGETS) == 4  # one per two CPUs, at most 4
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert process_count(auto, 10 * MIN_TARGETS) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert process_count(auto, 10 * MIN_TARGETS) == 1  # two children on two cores gained nothing
    assert process_count(HttpSettings(processes=3), 10) == 3


@pytest.fixture(scope="module")
def hosts_server() -> Iterator[FixtureServer]:
    server = FixtureServer(listeners=HOSTS).start()  # one port per host key
    yield server
    server.stop()


def corpus(tmp_path: Path, server: FixtureServer, per_host: int, path: str) -> list[str]:
    """``per_host`` articles per host; every 5th page is a 404, each article has an image."""
    folder = tmp_path / "corpus"
    folder.mkdir(exist_ok=True)
    urls = []
    for listener in range(HOSTS):
        for i in range(per_host):
            page = server.url(f"/status/404?k={i}" if i % 5 == 4 else f"{path}?k={i}", listener=listener)
            image = server.url(f"/image/pngsuite/basn2c16.png?k={i}", listener=listener)
            (folder / f"h{listener}-{i}.md").write_text(
                f'---\nwebUrl: "{page}"\nimages:\n  - url: "{image}"\n    width: 32\n    height: 32\n---\n'
            )
            urls += [page, image]
    return urls


def config(tmp_path: Path, name: str, processes: int) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(
        f'database_url = "sqlite:///{tmp_path}/{name}.db"\n'
        f'[corpus]\nroots = ["{tmp_path}/corpus"]\n'
        "[safety]\nallow_private = true\n"
        f"[http]\nprocesses = {processes}\nconcurrency = 8\nper_host_concurrency = {PER_HOST}\n"
        '[logging]\nformat = "json"\n'
    )
    return cfg


def monitor(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", "-c", str(cfg), *args]


def verdicts(name: str, tmp_path: Path) -> dict[str, tuple[str, int | None, str | None]]:
    engine = open_engine(f"sqlite:///{tmp_path}/{name}.db")
    with engine.connect() as conn:
        rows = conn.execute(
            select(UrlRow.url, ResultRow.verdict, ResultRow.http_status, ResultRow.image_format).join(
                ResultRow, ResultRow.url_id == UrlRow.id
            )
        ).all()
    engine.dispose()
    return {url: (verdict, status, fmt) for url, verdict, status, fmt in rows}


def test_two_processes_give_the_same_results_as_one(hosts_server: FixtureServer, tmp_path: Path) -> None:
    """Row for row the same verdicts, every URL once, and no host above its limit across processes."""
    urls = corpus(tmp_path, hosts_server, 12, "/slow-headers/40")
    hosts_server.reset()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def check(name: str, parts: int) -> subprocess.CompletedProcess[str]:
        command = monitor(config(tmp_path, name, parts), "check", "-f", "json")
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    split = check("split", 2)
    assert split.returncode == 2, split.stderr[-2000:]  # the 404s are errors
    logs = [json.loads(line) for line in split.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "run.processes" and e["processes"] == 2 for e in logs)
    assert [e["event"] for e in logs].count("run.finished") == 1  # the parent ends the run, once
    assert max(hosts_server.peak_by_host().values()) <= PER_HOST
    assert len(hosts_server.requests("/slow-headers")) == len([u for u in urls if "slow-headers" in u])
    single = check("single", 1)
    assert single.returncode == 2, single.stderr[-2000:]
    assert not any('"run.processes"' in line for line in single.stderr.splitlines())
    got, want = verdicts("split", tmp_path), verdicts("single", tmp_path)
    assert got == want and len(got) == len(urls)
    assert json.loads(split.stdout)["summary"] == json.loads(single.stdout)["summary"]


def test_sigterm_stops_every_process_and_the_run_resumes(hosts_server: FixtureServer, tmp_path: Path) -> None:
    """SIGTERM to the parent: children stop too (none left behind), the run is interrupted, resume ends it."""
    urls = corpus(tmp_path, hosts_server, 15, "/slow-headers/300")
    cfg = config(tmp_path, "stop", 2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        monitor(cfg, "check"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    engine = open_engine(f"sqlite:///{tmp_path}/stop.db")
    children: set[int] = set()
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 10:
        time.sleep(0.1)
        children |= _children_of(proc.pid)
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
    assert done >= 10 and len(children) >= 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    gone_by = time.monotonic() + 5  # multiprocessing's resource tracker exits when it sees the parent go
    while any(_alive(pid) for pid in children) and time.monotonic() < gone_by:
        time.sleep(0.1)
    for pid in children:
        assert not _alive(pid), f"child {pid} outlived the run"
    with engine.connect() as conn:
        assert conn.execute(select(RunRow.state)).scalar_one() == "interrupted"
        kept = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
    assert kept < len(urls)
    resumed = subprocess.run(
        monitor(cfg, "check", "--resume"), capture_output=True, env=env, cwd=ROOT, timeout=120
    )
    assert resumed.returncode == 2
    with engine.connect() as conn:
        n, distinct = conn.execute(select(func.count(), func.count(func.distinct(ResultRow.url_id)))).one()
        assert conn.execute(select(RunRow.state)).scalars().all() == ["finished"]
    assert n == distinct == len(urls)


KILL_SEED = 20_261_203  # fixed: the same kill moment on every run of the suite


@pytest.mark.parametrize("second", ["resume", "fresh"])
def test_kill_9_of_the_process_group_keeps_results_and_the_next_run_is_consistent(
    hosts_server: FixtureServer, tmp_path: Path, second: str
) -> None:
    """SIGKILL to the whole process group (parent and both children) mid-run keeps every committed
    result with its run counter; the next check marks the run interrupted, then `--resume` finishes
    it (or a plain check runs anew) with every URL checked exactly once and no kept row touched."""
    rng = random.Random(KILL_SEED)
    urls = corpus(tmp_path, hosts_server, 15, "/slow-headers/300")
    cfg = config(tmp_path, "kill", 2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        monitor(cfg, "check"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group: the parent, its children and nothing else
    )
    kill_after = rng.randrange(10, len(urls) // 3)
    engine = open_engine(f"sqlite:///{tmp_path}/kill.db")
    children: set[int] = set()
    done = 0
    while proc.poll() is None and (done < kill_after or len(children) < 2):
        time.sleep(0.05)
        children |= _children_of(proc.pid)
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
    assert proc.poll() is None, "the check ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    while any(_alive(pid) for pid in children):  # SIGKILL always lands; wait for the kernel to finish
        time.sleep(0.05)
    assert len(children) >= 2
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        run = conn.execute(select(RunRow.id, RunRow.state, RunRow.checked)).one()
        kept = set(conn.execute(select(ResultRow.id, ResultRow.url_id, ResultRow.checked_at)).all())
    assert tuple(run) == (1, "running", len(kept))  # the counter moved with the rows it counts
    assert kill_after <= len(kept) < len(urls)
    assert len({url_id for _, url_id, _ in kept}) == len(kept)
    command = monitor(cfg, "check", *(["--resume"] if second == "resume" else []), "-f", "json")
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert again.returncode == 2, again.stderr[-2000:]  # the 404s are errors
    logs = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    assert [e["run_id"] for e in logs if e["event"] == "run.interrupted"] == [1]
    last = 1 if second == "resume" else 2
    with engine.connect() as conn:
        runs = conn.execute(select(RunRow.id, RunRow.state, RunRow.checked).order_by(RunRow.id)).all()
        rows = conn.execute(
            select(ResultRow.run_id, ResultRow.id, ResultRow.url_id, ResultRow.checked_at, UrlRow.url).join(
                UrlRow, UrlRow.id == ResultRow.url_id
            )
        ).all()
    engine.dispose()
    checked = sorted(url for run_id, _, _, _, url in rows if run_id == last)
    assert checked == sorted(urls)  # every URL once: none lost, none twice
    first_run = {(rid, url_id, at) for run_id, rid, url_id, at, _ in rows if run_id == 1}
    if second == "resume":
        assert [tuple(r) for r in runs] == [(1, "finished", len(urls))]
        assert kept <= first_run  # resuming added the missing results and left the kept ones alone
    else:
        assert [tuple(r) for r in runs] == [(1, "interrupted", len(kept)), (2, "finished", len(urls))]
        assert first_run == kept


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
