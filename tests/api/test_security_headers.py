"""Security headers on every answer: JSON, errors, the sign-in page, docs; HSTS when configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.headers import SecurityHeadersMiddleware
from app.main import create_app


@pytest.fixture
def plain(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        yield client


def assert_hardened(headers: object, *, docs: bool = False) -> None:
    h = headers  # httpx.Headers: case-insensitive
    csp = h["content-security-policy"]  # type: ignore[index]
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    if not docs:
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
        scripts = directives.get("script-src", directives["default-src"])
        assert scripts == "'self'", "no inline or foreign script outside the API docs"
    assert h["x-content-type-options"] == "nosniff"  # type: ignore[index]
    assert h["x-frame-options"] == "DENY"  # type: ignore[index]
    assert h["referrer-policy"] == "no-referrer"  # type: ignore[index]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/login", 200),
        ("GET", "/openapi.json", 401),
        ("GET", "/api/v1/courses", 401),
        ("GET", "/api/v1/no-such-route", 404),
        ("POST", "/api/v1/fractions", 401),
    ],
)
def test_every_answer_carries_the_security_headers(
    plain: TestClient, method: str, path: str, status: int
) -> None:
    response = plain.request(method, path)
    assert response.status_code == status
    assert_hardened(response.headers)
    assert "strict-transport-security" not in response.headers


def test_answers_with_credentials_and_refusals_by_the_upload_limit_carry_them_too(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = sf.make_settings(tmp_path, sqlite_url, max_upload_mb=0.001)
    with TestClient(create_app(settings)) as client:
        headers = sf.add_api_key(client, "console-h")
        ok = client.get("/api/v1/courses", headers=headers)
        too_large = client.post("/api/v1/fractions", headers=headers, content=b"x" * 5000)
    assert ok.status_code == 200
    assert too_large.status_code == 413
    assert_hardened(ok.headers)
    assert_hardened(too_large.headers)


def test_the_api_docs_may_load_swagger_ui_but_still_not_be_framed(plain: TestClient) -> None:
    response = plain.get("/docs", headers=sf.add_api_key(plain, "docs-reader"))
    assert response.status_code == 200
    assert_hardened(response.headers, docs=True)
    assert "https:" not in response.headers["content-security-policy"]


def test_hsts_is_sent_when_configured(tmp_path: Path, sqlite_url: str) -> None:
    settings = sf.make_settings(tmp_path, sqlite_url, hsts_max_age_s=31_536_000)
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


def test_a_page_that_sets_its_own_policy_keeps_it() -> None:
    async def page(_: Request) -> PlainTextResponse:
        return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src 'none'"})

    app = Starlette(routes=[Route("/page", page)])
    app.add_middleware(SecurityHeadersMiddleware)
    response = TestClient(app).get("/page")
    assert response.headers["content-security-policy"] == "default-src 'none'"
    assert response.headers["x-frame-options"] == "DENY"
