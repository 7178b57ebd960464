"""Liveness and readiness, which need no credentials."""

from __future__ import annotations

import service_fixtures as sf
from service_fixtures import TestClient


def test_healthz_answers_without_credentials(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_while_no_worker_is_warm(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["database"] == "ok"
    assert body["workers_warm"] == 0


def test_openapi_documents_the_console_endpoints(client: TestClient) -> None:
    key = sf.add_api_key(client, "reader")
    paths = client.get("/openapi.json", headers=key).json()["paths"]
    assert "/api/v1/fractions" in paths
    assert "/api/v1/fractions/{fraction_id}" in paths
    assert "/api/v1/courses" in paths
    assert "/api/v1/patients/{patient_id}/fractions" in paths
    assert client.get("/docs", headers=key).status_code == 200
