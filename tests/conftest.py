"""Shared fixtures. Keep each fixture small and documented; modules append their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import FixtureServer


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
