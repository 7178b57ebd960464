"""The sign-in rate limit: failed password checks counted in the database, per name and address.

Limits in these tests: 5 failures per user name, 8 per client address, within 15 minutes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select, update

from app.config import Settings
from app.db.engine import make_engine, make_session_factory
from app.db.models import AuditEvent, Role, utcnow
from app.db.models_security import SignInAttempt
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


# --- the background flush: refused sign-ins reach the audit trail with no later request --------


def failed_sign_in_rows(sessions: Any) -> Sequence[AuditEvent]:
    with sessions() as session:
        return session.scalars(
            select(AuditEvent).where(AuditEvent.action == "sign_in_failed").order_by(AuditEvent.id)
        ).all()


def totals(events: Sequence[AuditEvent]) -> dict[str, tuple[int, int]]:
    """User → (failures, refused) summed over its rows."""
    summed: dict[str, tuple[int, int]] = {}
    for e in events:
        failures, refused = summed.get(e.entity_id, (0, 0))
        summed[e.entity_id] = (failures + e.detail["failures"], refused + e.detail["refused"])
    return summed


def assert_one_row_per_user_and_minute(events: Sequence[AuditEvent]) -> None:
    per_minute = Counter((e.entity_id, e.detail["minute"]) for e in events)
    assert max(per_minute.values()) == 1, per_minute


def end_the_minute_of_every_attempt(client: TestClient) -> None:
    """Move every attempt into a minute that is over (as if that minute had passed)."""
    ctx = client.app.state.context  # type: ignore[attr-defined]
    with ctx.writer() as session:
        session.execute(
            update(SignInAttempt).values(at=utcnow().replace(second=30) - timedelta(minutes=2))
        )
        session.commit()


def wait_for_rows(sessions: Any, n_attempts: int, timeout_s: float = 10.0) -> Sequence[AuditEvent]:
    """The ``sign_in_failed`` rows once they count ``n_attempts`` (bounded; not a timing check)."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = failed_sign_in_rows(sessions)
        counted = sum(e.detail["failures"] + e.detail["refused"] for e in events)
        if counted >= n_attempts or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@pytest.fixture
def flushed(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app flushing the sign-in audit every 0.1 s."""
    settings = sf.make_settings(
        tmp_path,
        database_url,
        sign_in_max_failures_per_user=5,
        sign_in_max_failures_per_ip=1000,
        sign_in_audit_flush_s=0.1,
    )
    with TestClient(create_app(settings), client=("192.0.2.10", 50000)) as client:
        sf.add_person(client, "ana", Role.THERAPIST, PASSWORD)
        yield client


def test_refused_sign_ins_reach_the_audit_trail_once_their_minute_is_over_with_no_request(
    flushed: TestClient,
) -> None:
    """No password check and no ``users list`` after the attempts: the service's own flush."""
    codes = [courses(flushed, "ana", f"wrong {i}") for i in range(7)]
    codes += [courses(flushed, name, "wrong") for name in ("nobody", "mallory")]
    assert codes == [401] * 5 + [429] * 2 + [401] * 2
    end_the_minute_of_every_attempt(flushed)

    events = wait_for_rows(flushed.app.state.context.sessions, n_attempts=9)  # type: ignore[attr-defined]

    assert totals(events) == {"ana": (5, 2), "(unknown)": (2, 0)}
    assert_one_row_per_user_and_minute(events)


def test_a_flood_of_refused_sign_ins_stays_one_audit_row_per_user_and_minute(
    flushed: TestClient,
) -> None:
    """40 tries under one name and 40 under names of no user, flushed every 0.1 s meanwhile."""
    codes = [courses(flushed, "ana", "guess") for _ in range(40)]
    codes += [courses(flushed, f"guess-{i}", "guess") for i in range(40)]
    assert codes.count(429) == 35 and codes.count(401) == 45
    end_the_minute_of_every_attempt(flushed)

    events = wait_for_rows(flushed.app.state.context.sessions, n_attempts=80)  # type: ignore[attr-defined]

    assert totals(events) == {"ana": (5, 35), "(unknown)": (40, 0)}
    assert_one_row_per_user_and_minute(events)
    assert len(events) <= 4, "80 refused sign-ins within a minute or two: at most 2 rows each"


def test_stopping_the_service_writes_the_refused_sign_ins_of_the_open_minute(
    tmp_path: Path, database_url: str
) -> None:
    """The periodic flush is 60 s away and no minute needs to end: only the shutdown flush can
    write the last attempt."""
    settings = sf.make_settings(tmp_path, database_url, sign_in_audit_flush_s=60)
    with TestClient(create_app(settings), client=("192.0.2.10", 50000)) as client:
        sf.add_person(client, "ana", Role.THERAPIST, PASSWORD)
        assert [courses(client, "ana", "wrong"), courses(client, "ben", "wrong")] == [401, 401]

    engine = make_engine(settings.resolved_database_url())
    try:
        events = failed_sign_in_rows(make_session_factory(engine))
    finally:
        engine.dispose()
    assert totals(events) == {"ana": (1, 0), "(unknown)": (1, 0)}
    assert_one_row_per_user_and_minute(events)
