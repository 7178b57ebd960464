"""The API documentation is not public by default, and needs no other origin; cookies are
Secure unless the service is explicitly run over plain HTTP on localhost (issue 11, item 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient

from app.config import Settings
from app.db.models import Role

DOCS = ("/docs", "/redoc", "/openapi.json")


def test_the_api_docs_need_authentication_unless_made_public(
    tmp_path: Path, sqlite_url: str
) -> None:
    with TestClient(sf.create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        assert [client.get(path).status_code for path in DOCS] == [401, 401, 401]
        key = sf.add_api_key(client, "console-1", Role.CONSOLE)
        assert [client.get(path, headers=key).status_code for path in DOCS] == [200, 200, 200]
        assert client.get("/openapi.json", headers=key).json()["info"]["title"] == "mvct-guide"
    public = sf.make_settings(tmp_path, sqlite_url, public_docs=True)
    with TestClient(sf.create_app(public)) as client:
        assert [client.get(path).status_code for path in DOCS] == [200, 200, 200]


def test_swagger_ui_and_redoc_load_only_from_this_origin(tmp_path: Path, sqlite_url: str) -> None:
    public = sf.make_settings(tmp_path, sqlite_url, public_docs=True)
    with TestClient(sf.create_app(public)) as client:
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            policy = page.headers["content-security-policy"]
            assert "https:" not in policy and "http:" not in policy, policy
            assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";")[0]
            assert "cdn.jsdelivr.net" not in page.text and "fonts.googleapis" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            response = client.get(f"/docs-assets/{asset}")
            assert response.status_code == 200 and len(response.content) > 10_000, asset


def test_session_cookies_are_secure_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MVCT_GUIDE_COOKIE_SECURE", raising=False)
    assert Settings().cookie_secure is True


def test_plain_http_cookies_are_refused_on_an_address_other_than_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    from app.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    monkeypatch.setenv("MVCT_GUIDE_START_WORKERS", "false")
    monkeypatch.setenv("MVCT_GUIDE_COOKIE_SECURE", "false")
    data = ["--data-dir", str(tmp_path / "d")]
    assert main(["serve", "--host", "0.0.0.0", *data]) == 2
    assert "MVCT_GUIDE_COOKIE_SECURE" in capsys.readouterr().err
    assert main(["serve", "--host", "127.0.0.1", *data]) == 0
