"""Shared fixtures. Keep each fixture small and documented; modules append their own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

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
