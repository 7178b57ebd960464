"""Fuzz every operation of the OpenAPI schema: whatever arrives, never a 500.

Schemathesis generates requests from the schema, both valid (positive) and invalid (negative);
the app runs on a migrated SQLite database with authenticated keys (console, and physicist for
PATCH and the held DICOM series). Responses must also match the documented status codes, content
types and schemas. (Schemathesis' own pytest plugin does not work with pytest 9 yet, so its
Hypothesis strategies are driven directly.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import service_fixtures as sf
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from service_fixtures import TestClient

from app.config import Settings
from app.db.models import Role

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _cases() -> list[tuple[GenerationMode, str]]:
    """(mode, "METHOD /path"): every operation valid-ish, and invalid where it takes input."""
    with tempfile.TemporaryDirectory() as folder:  # create_app touches nothing on disk
        app = sf.create_app(Settings(data_dir=Path(folder), start_workers=False))
        paths = app.openapi()["paths"]
    cases = []
    for path, operations in sorted(paths.items()):
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            cases.append((GenerationMode.POSITIVE, label))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((GenerationMode.NEGATIVE, label))
    return cases


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, dict]]]:
    """One app per database for the whole module (PostgreSQL refuses what SQLite lets by)."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp_path / 'db' / 'fuzz.sqlite3'}"
    if request.param == "postgresql":
        if not sf.postgres_reachable():
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        url = sf.postgres().new_database()
    app = sf.create_app(sf.make_settings(tmp_path, url, public_docs=True))
    with TestClient(app) as client:
        keys = {
            "console": sf.add_api_key(client, "fuzz-console"),
            "physicist": sf.add_api_key(client, "fuzz-physicist", Role.PHYSICIST),
        }
        yield schemathesis.openapi.from_asgi("/openapi.json", app), keys
    if request.param == "postgresql":
        sf.postgres().drop(url)


@pytest.mark.parametrize(("mode", "label"), _cases())
def test_no_request_makes_the_service_fail(
    fuzzed: tuple[Any, dict[str, dict]], label: str, mode: GenerationMode
) -> None:
    schema, keys = fuzzed
    operations = [r.ok() for r in schema.get_all_operations()]
    operation = next(op for op in operations if op.label == label)
    physicist = operation.method.upper() == "PATCH" or operation.path.startswith("/api/v1/dicom/")
    headers = keys["physicist"] if physicist else keys["console"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if label == "GET /readyz":  # 503 is its documented answer while no worker is warm
            response = case.call_and_validate(headers=headers, checks=CHECKS[1:])
            assert response.status_code in (200, 503)
        else:
            case.call_and_validate(headers=headers, checks=CHECKS)

    run()
