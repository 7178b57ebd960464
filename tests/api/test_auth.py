"""Deny by default: no credentials → 401, wrong role → 403; secrets are stored only hashed."""

from __future__ import annotations

import hashlib
import re

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import ApiKey, AuditEvent, Role, User


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every documented operation under /api, with path parameters filled in."""
    routes = []
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    for template, operations in paths.items():
        if template.startswith("/api"):
            path = re.sub(r"\{[^}]+\}", "1", template)
            routes.extend((method.upper(), path) for method in operations)
    return routes


def test_every_api_route_answers_401_without_credentials(client: TestClient) -> None:
    routes = _api_routes(client)
    assert len(routes) >= 7
    for method, path in routes:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert "detail" in response.json()
        assert response.headers["www-authenticate"].startswith("Basic")


def test_unknown_and_revoked_api_keys_are_refused(client: TestClient) -> None:
    from app.services.accounts import revoke_api_key

    headers = sf.add_api_key(client, "console-x")
    assert client.get("/api/v1/courses", headers=headers).status_code == 200
    forged = {"X-API-Key": headers["X-API-Key"][:-2] + "zz"}
    assert client.get("/api/v1/courses", headers=forged).status_code == 401
    with client.app.state.context.writer.begin() as session:  # type: ignore[attr-defined]
        revoke_api_key(session, "console-x", "test")
    assert client.get("/api/v1/courses", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path", "expected"),
    [
        (Role.ADMIN, "GET", "/api/v1/fractions/1", 403),
        (Role.ADMIN, "GET", "/api/v1/courses", 403),
        (Role.THERAPIST, "POST", "/api/v1/fractions", 403),
        (Role.THERAPIST, "POST", "/api/v1/courses", 403),
        (Role.THERAPIST, "PATCH", "/api/v1/courses/1", 403),
        (Role.CONSOLE, "PATCH", "/api/v1/courses/1", 403),
        (Role.PHYSICIAN, "POST", "/api/v1/fractions", 403),
        (Role.THERAPIST, "GET", "/api/v1/fractions/1", 404),
        (Role.CONSOLE, "GET", "/api/v1/patients/P1/fractions", 200),
        (Role.PHYSICIST, "GET", "/api/v1/courses", 200),
    ],
)
def test_roles_decide_what_a_key_may_do(
    client: TestClient, role: Role, method: str, path: str, expected: int
) -> None:
    headers = sf.add_api_key(client, f"key-{role.value}", role)
    response = client.request(method, path, headers=headers)
    assert response.status_code == expected, response.text
    if expected == 403:
        assert role.value in response.json()["detail"]


def test_people_log_in_with_their_argon2_hashed_password(client: TestClient) -> None:
    sf.add_person(client, "ana", Role.THERAPIST, password="a long secret")
    assert client.get("/api/v1/courses", auth=("ana", "a long secret")).status_code == 200
    assert client.get("/api/v1/courses", auth=("ana", "wrong secret")).status_code == 401
    assert client.get("/api/v1/courses", auth=("nobody", "a long secret")).status_code == 401
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        user = session.scalars(select(User).where(User.username == "ana")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert "a long secret" not in user.password_hash


def test_api_keys_are_stored_only_as_sha256_digests(client: TestClient) -> None:
    key = sf.add_api_key(client, "console-h")["X-API-Key"]
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(ApiKey).where(ApiKey.name == "console-h")).one()
        assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest()
        stored = " ".join(str(v) for v in (row.name, row.role, row.key_prefix, row.key_sha256))
        assert key not in stored
        actions = set(session.scalars(select(AuditEvent.action)))
    assert "api_key_created" in actions


def test_a_user_name_with_control_characters_is_just_a_failed_login(client: TestClient) -> None:
    response = client.get("/api/v1/courses", auth=("bad\x00name", "whatever"))
    assert response.status_code == 401
