"""The sign-in rate limit: failed password checks counted in the database, per name and address.

Limits in these tests: 5 failures per user name, 8 per client address, within 15 minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db.models import AuditEvent, Role, utcnow
from app.main import create_app
from app.services import ratelimit

PASSWORD = "correct horse"


@pytest.fixture
def limited(tmp_path: Path, database_url: str) -> Settings:
    return sf.make_settings(
        tmp_path, database_url, sign_in_max_failures_per_user=5, sign_in_max_failures_per_ip=8
    )


@pytest.fixture
def app_client(limited: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(limited), client=("192.0.2.10", 50000)) as client:
        sf.add_person(client, "ana", Role.THERAPIST, PASSWORD)
        sf.add_person(client, "ben", Role.PHYSICIAN, PASSWORD)
        yield client


def courses(client: TestClient, username: str, password: str) -> int:
    return client.get("/api/v1/courses", auth=(username, password)).status_code


def test_after_five_wrong_passwords_even_the_right_one_is_refused_with_429(
    app_client: TestClient,
) -> None:
    assert [courses(app_client, "ana", f"wrong {i}") for i in range(5)] == [401] * 5
    response = app_client.get("/api/v1/courses", auth=("ana", PASSWORD))
    assert response.status_code == 429
    assert "too many failed sign-ins for this user name" in response.json()["detail"]
    assert 0 < int(response.headers["retry-after"]) <= 900
    assert courses(app_client, "ben", PASSWORD) == 200, "another user is not locked out"


def test_a_successful_sign_in_starts_the_count_again(app_client: TestClient) -> None:
    assert [courses(app_client, "ana", "wrong") for _ in range(3)] == [401] * 3
    assert courses(app_client, "ana", PASSWORD) == 200
    assert [courses(app_client, "ana", "wrong") for _ in range(4)] == [401] * 4
    assert courses(app_client, "ana", PASSWORD) == 200  # 4 since the success, 7 in all


def test_one_address_trying_many_names_is_refused_but_not_other_addresses(
    app_client: TestClient, limited: Settings
) -> None:
    names = [f"guess-{i}" for i in range(7)] + ["ben"]
    assert [courses(app_client, name, "wrong") for name in names] == [401] * 8
    assert courses(app_client, "ana", PASSWORD) == 429
    other = TestClient(app_client.app, client=("198.51.100.7", 50000))
    assert other.get("/api/v1/courses", auth=("ana", PASSWORD)).status_code == 200


def test_replicas_on_one_database_share_the_count(
    app_client: TestClient, limited: Settings
) -> None:
    """A second app on the same database stands for a second replica."""
    with TestClient(create_app(limited), client=("203.0.113.5", 50000)) as replica:
        assert [courses(app_client, "ana", "wrong") for _ in range(3)] == [401] * 3
        assert [courses(replica, "ana", "wrong") for _ in range(2)] == [401] * 2
        assert courses(app_client, "ana", PASSWORD) == 429
        assert courses(replica, "ana", PASSWORD) == 429


def test_the_refusal_ends_when_the_failures_leave_the_window(app_client: TestClient) -> None:
    assert [courses(app_client, "ana", "wrong") for _ in range(5)] == [401] * 5
    ctx = app_client.app.state.context  # type: ignore[attr-defined]
    limits = ratelimit.SignInLimits.of(ctx.settings)
    ana = ratelimit.Subject.of("ana", None)
    with ctx.sessions() as session:
        with pytest.raises(ratelimit.TooManySignInAttemptsError):
            ratelimit.check(session, ana, "192.0.2.10", limits)
        later = utcnow() + timedelta(seconds=limits.window_s + 1)
        ratelimit.check(session, ana, "192.0.2.10", limits, now=later)  # no refusal


def test_failures_are_audited_with_the_address_never_the_password_or_an_unknown_name(
    app_client: TestClient,
) -> None:
    assert courses(app_client, "ana", "hunter2-secret") == 401
    assert courses(app_client, "my password is s3cr3t", "x") == 401
    ctx = app_client.app.state.context  # type: ignore[attr-defined]
    with ctx.writer() as session:
        ratelimit.flush_audit(session, utcnow() + timedelta(minutes=2))
        session.commit()
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sign_in_failed").order_by(AuditEvent.id)
        ).all()
    assert sorted((e.entity_id, e.detail["failures"], e.detail["clients"]) for e in events) == [
        ("(unknown)", 1, ["192.0.2.10"]),
        ("ana", 1, ["192.0.2.10"]),
    ]
    text = " ".join(f"{e.actor} {e.entity_id} {e.detail}" for e in events)
    assert "hunter2" not in text and "s3cr3t" not in text
