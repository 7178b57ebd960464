"""Fixtures of the integration tests: real workers, real databases, real uvicorn processes."""

from __future__ import annotations

import pytest
import service_fixtures as sf
from service_fixtures import database_url, sqlite_url  # noqa: F401 (fixtures)

from app.jobs.pool import WorkerPool


@pytest.fixture(scope="session")
def series(tmp_path_factory: pytest.TempPathFactory) -> sf.Samples:
    return sf.samples(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="session")
def warm_pool() -> WorkerPool:
    """Two warm registration workers shared by every test that registers."""
    return sf.shared_pool()
