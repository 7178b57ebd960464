"""Fixtures of the API tests: the real app on a fresh database (SQLite, and PostgreSQL when up)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient, database_url, sqlite_url  # noqa: F401 (fixtures)

from app.config import Settings
from app.main import create_app


@pytest.fixture(scope="session")
def series(tmp_path_factory: pytest.TempPathFactory) -> sf.Samples:
    return sf.samples(tmp_path_factory.mktemp("series"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:  # noqa: F811
    return sf.make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app without registration workers: fractions stay queued (202)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def console(client: TestClient) -> dict[str, str]:
    return sf.add_api_key(client, "console-1")
