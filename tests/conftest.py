"""Shared fixtures. Keep each fixture small and documented; modules append their own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

from monitor.logs import close_logging
from tests.server import FixtureServer

# Property tests draw the same examples on every run, so CI is repeatable and a red run replays exactly;
# HYPOTHESIS_PROFILE=explore draws fresh ones (and remembers failures) when hunting for bugs.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def _fixture_server() -> Iterator[FixtureServer]:
    server = FixtureServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_fixture_server: FixtureServer) -> FixtureServer:
    """The fixture HTTP server on 127.0.0.1 (one per session), with its records reset per test."""
    _fixture_server.reset()
    return _fixture_server


@pytest.fixture
def plain_structlog() -> Iterator[None]:
    """For tests that run the CLI or a check in this process: leave structlog as it was found."""
    yield
    close_logging()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
