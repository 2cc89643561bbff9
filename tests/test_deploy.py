"""Deployment units in examples/: the systemd units pass `systemd-analyze verify` where it is
installed, and hold the hardening the README promises; the Dockerfile and compose file hold what
they promise, and the image builds when asked to (MONITOR_DOCKER_BUILD=1 and a Docker daemon:
the build pulls python:3.11-slim from a container registry, so it is never a default CI step)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "examples" / "systemd"
DOCKER = ROOT / "examples" / "docker"
UNIT_EXEC = "/opt/link-media-monitor/bin/monitor"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "StateDirectory": "link-media-monitor"}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"))
    return parser


def test_units_say_what_the_readme_promises() -> None:
    """Timer: Persistent=true and the nightly service; both services hardened with a state directory."""
    timer = unit("link-media-monitor-nightly.timer")
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "link-media-monitor-nightly.service"
    nightly, daemon = unit("link-media-monitor-nightly.service"), unit("link-media-monitor.service")
    assert nightly["Service"]["Type"] == "oneshot"
    assert nightly["Service"]["ExecStart"] == f"{UNIT_EXEC} run-job nightly_check"
    assert nightly["Service"]["SuccessExitStatus"] == "2"  # problems found is not a failed unit
    assert daemon["Service"]["ExecStart"] == f"{UNIT_EXEC} schedule"
    for service in (nightly, daemon):
        for key, value in HARDENING.items():
            assert service["Service"][key] == value, key
        assert service["Service"]["DynamicUser"] == "yes"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` on copies whose ExecStart is this environment's real `monitor`."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed: the units were checked by parsing only")
    monitor = Path(sys.executable).parent / "monitor"
    if not monitor.exists():
        pytest.skip(f"no `monitor` script beside {sys.executable} to stand in for {UNIT_EXEC}")
    for src in SYSTEMD.iterdir():
        (tmp_path / src.name).write_text(src.read_text(encoding="utf-8").replace(UNIT_EXEC, str(monitor)))
    units = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=120)
    # an unknown or misspelt key only warns (exit 0): any output at all fails the test
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_dockerfile_is_slim_non_root_with_state_on_a_volume() -> None:
    """Every stage from a slim base; runs as a named non-root user; SQLite and reports under /data."""
    lines = [line.strip() for line in (DOCKER / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    bases = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert bases and all(base.endswith("-slim") for base in bases)
    [user] = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    assert 'VOLUME ["/data"]' in instructions
    text = "\n".join(instructions)
    assert "MONITOR_DATABASE_URL=sqlite:////data/monitor.db" in text
    assert instructions[-1] == 'CMD ["monitor", "schedule"]'  # exec form: the daemon gets SIGTERM


def test_compose_runs_the_daemon_postgres_and_two_workers() -> None:
    """The compose file: PostgreSQL with a health check, the daemon in distributed mode, two workers."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "daemon", "worker"}
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    daemon, worker = services["daemon"], services["worker"]
    assert daemon["command"] == ["monitor", "schedule"]
    assert daemon["environment"]["MONITOR_DISTRIBUTED__ENABLED"] == "true"
    assert daemon["ports"] == ["127.0.0.1:9464:9464"]  # published on loopback only
    assert worker["command"] == ["monitor", "worker"] and worker["deploy"]["replicas"] == 2
    for service in (daemon, worker):
        assert service["environment"]["MONITOR_DATABASE_URL"].startswith("postgresql://")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "examples/docker/Dockerfile"
        assert (DOCKER / service["build"]["context"]).resolve() == ROOT


def _docker_usable() -> str | None:
    """Why the image cannot be built here, or None when it can."""
    if os.environ.get("MONITOR_DOCKER_BUILD") != "1":
        return "set MONITOR_DOCKER_BUILD=1 to build the image (it pulls python:3.11-slim from a registry)"
    docker = shutil.which("docker")
    if docker is None:
        return "no docker on PATH"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"docker daemon not reachable: {(info.stderr or info.stdout).strip().splitlines()[-1:]}"
    return None


@pytest.mark.slow
def test_container_image_builds_and_runs_as_non_root() -> None:
    """Opt-in: build the image, then `monitor --version` and `id -u` inside it."""
    reason = _docker_usable()
    if reason is not None:
        pytest.skip(reason)
    tag = "link-media-monitor:test"
    build = subprocess.run(
        ["docker", "build", "-f", str(DOCKER / "Dockerfile"), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    version = subprocess.run(
        ["docker", "run", "--rm", tag, "monitor", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and "link-media-monitor" in version.stdout, version.stderr
    uid = subprocess.run(["docker", "run", "--rm", tag, "id", "-u"], capture_output=True, text=True)
    assert uid.stdout.strip() not in ("", "0"), uid.stdout + uid.stderr
