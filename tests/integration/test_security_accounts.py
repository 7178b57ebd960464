"""`mvct-guide users deactivate|reactivate`, and `set-password` ending open sessions (issue 11,
item 5): a deactivated user cannot sign in, sign, or go on using a session already open."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.cli import main
from app.config import Settings
from app.db.models import AuditEvent, User

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_signoff_web import sign_in

PASSWORD = "a long password"


@pytest.fixture
def app_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("MVCT_GUIDE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MVCT_GUIDE_DATABASE_URL", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "dr-who", "--role", "physician", "--full-name", "Dr Who"]) == 0
    with TestClient(sf.create_app(Settings(start_workers=False)), follow_redirects=False) as c:
        yield c


def basic(client: TestClient, password: str = PASSWORD) -> int:
    return client.get("/api/v1/courses", auth=("dr-who", password)).status_code


def signs(client: TestClient) -> int:
    body = {"username": "dr-who", "password": PASSWORD, "decision": "rejected", "reason": "x"}
    return client.post("/api/v1/fractions/4242/signoff", json=body).status_code


def test_a_deactivated_user_cannot_sign_in_sign_or_keep_a_session_until_reactivated(
    app_client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sign_in(app_client, password=PASSWORD).status_code == 303
    assert app_client.get("/worklist").status_code == 200
    assert basic(app_client) == 200 and signs(app_client) == 404  # 404: signature accepted
    assert main(["users", "deactivate", "dr-who"]) == 0
    assert "dr-who deactivated; 1 open session(s) ended" in capsys.readouterr().out
    assert app_client.get("/worklist").status_code == 303
    assert basic(app_client) == 401 and signs(app_client) == 401
    assert sign_in(app_client, password=PASSWORD).status_code == 401
    assert main(["users", "list"]) == 0 and "(inactive)" in capsys.readouterr().out
    assert main(["users", "reactivate", "dr-who"]) == 0
    assert basic(app_client) == 200 and signs(app_client) == 404
    assert main(["users", "deactivate", "nobody"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with app_client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        actions = db.scalars(select(AuditEvent.action).where(AuditEvent.entity == "user")).all()
    assert "user_deactivated" in actions and "user_reactivated" in actions


def test_setting_a_password_ends_the_users_sessions_and_does_not_reactivate(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sign_in(app_client, password=PASSWORD).status_code == 303
    assert app_client.get("/worklist").status_code == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("another long password\n"))
    assert main(["users", "set-password", "dr-who"]) == 0
    assert "1 open session(s) ended" in capsys.readouterr().out
    assert app_client.get("/worklist").status_code == 303
    assert basic(app_client, "another long password") == 200
    assert main(["users", "deactivate", "dr-who"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("a third long password\n"))
    assert main(["users", "set-password", "dr-who"]) == 0
    with app_client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        assert db.scalar(select(User.active).where(User.username == "dr-who")) is False
