"""Every password check — HTTP Basic, the sign-in page, the API signature and the review page's
signature — goes through one function with one rate limit (issue 11, items 1-3 and 14).

Limits here: 5 failures per user name, 8 per client address, within 15 minutes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import review_data
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select
from test_signoff_web import csrf_of, registered_fraction, sign_in

from app.config import Settings
from app.db.models import AuditEvent, Role, utcnow
from app.db.models_signoff import BrowserSession
from app.main import create_app
from app.services import accounts, ratelimit, security

PASSWORD = "correct horse"
PEER = "192.0.2.10"


@pytest.fixture
def limited(tmp_path: Path, database_url: str) -> Settings:
    return sf.make_settings(
        tmp_path, database_url, sign_in_max_failures_per_user=5, sign_in_max_failures_per_ip=8
    )


@pytest.fixture
def local_limited(tmp_path: Path, sqlite_url: str) -> Settings:
    return sf.make_settings(
        tmp_path, sqlite_url, sign_in_max_failures_per_user=5, sign_in_max_failures_per_ip=8
    )


def with_people(settings: Settings, **kwargs: Any) -> TestClient:
    client = TestClient(create_app(settings), client=(PEER, 50000), **kwargs)
    client.__enter__()
    sf.add_person(client, "dr-who", Role.PHYSICIAN, PASSWORD)
    sf.add_person(client, "terry", Role.THERAPIST, PASSWORD)
    sf.add_person(client, "root", Role.ADMIN, PASSWORD)
    return client


@pytest.fixture
def api(local_limited: Settings) -> Iterator[TestClient]:
    client = with_people(local_limited)
    yield client
    client.__exit__(None, None, None)


def sign(client: TestClient, fraction_id: int = 1, **body: Any) -> Any:
    payload = {"username": "dr-who", "password": PASSWORD, "decision": "approved", **body}
    return client.post(f"/api/v1/fractions/{fraction_id}/signoff", json=payload)


def basic(client: TestClient, username: str, password: str) -> int:
    return client.get("/api/v1/courses", auth=(username, password)).status_code


def test_signing_by_api_shares_the_sign_in_limit_and_answers_429_after_five_failures(
    api: TestClient,
) -> None:
    codes = [sign(api, password=f"guess {i}").status_code for i in range(7)]
    assert codes == [401] * 5 + [429] * 2
    assert basic(api, "dr-who", PASSWORD) == 429, "the signature failures lock sign-in too"


def test_a_user_locked_out_of_sign_in_cannot_sign_by_api(api: TestClient) -> None:
    assert [basic(api, "dr-who", f"guess {i}") for i in range(5)] == [401] * 5
    response = sign(api)  # the right password
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


def test_wrong_password_unknown_user_and_a_role_that_may_not_sign_get_the_same_401(
    api: TestClient,
) -> None:
    answers = [
        sign(api, password="wrong horse"),
        sign(api, username="nobody"),
        sign(api, username="terry"),  # the right password of a therapist
        sign(api, username="root"),  # the right password of an admin
    ]
    assert [a.status_code for a in answers] == [401] * 4
    assert len({a.json()["detail"] for a in answers}) == 1
    assert "role" not in answers[2].json()["detail"]


def test_an_unknown_user_name_is_locked_out_like_a_known_one(api: TestClient) -> None:
    """A 429 only for names that exist would tell an attacker which names exist."""
    assert [basic(api, "nobody", f"guess {i}") for i in range(5)] == [401] * 5
    assert basic(api, "nobody", "guess 5") == 429


def test_every_password_check_costs_one_hash_verification_known_or_unknown_active_or_not(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = security.verify_password

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash[:9])
        return real(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counting)
    ctx = api.app.state.context  # type: ignore[attr-defined]
    with ctx.writer.begin() as session:
        sf_user = accounts.repo.user_by_username(session, "terry")
        assert sf_user is not None
        sf_user.active = False
    for username, password in [
        ("dr-who", "wrong"),
        ("no-such-user", "wrong"),
        ("terry", PASSWORD),  # inactive
        ("x" * 200, "wrong"),  # not even a plausible name
    ]:
        calls.clear()
        assert sign(api, username=username, password=password).status_code in (401, 422)
        if len(username) <= 64:
            assert len(calls) == 1, username
            assert calls[0].startswith("$argon2id"), "the same hash cost for every name"


def test_thirty_parallel_wrong_tries_count_at_most_five_before_429(limited: Settings) -> None:
    client = with_people(limited)
    try:
        ctx = client.app.state.context  # type: ignore[attr-defined]
        outcomes: list[str] = []
        start = threading.Barrier(30)

        def attempt(i: int) -> None:
            start.wait()
            try:
                accounts.authenticate(ctx, "dr-who", f"guess {i}", f"198.51.100.{i}")
            except accounts.TooManySignInAttemptsError:
                outcomes.append("429")
            except accounts.SignInError:
                outcomes.append("401")

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(outcomes) == 30
        assert outcomes.count("401") <= 5, outcomes
        assert outcomes.count("401") + outcomes.count("429") == 30
    finally:
        client.__exit__(None, None, None)


def test_a_locked_out_physician_still_signs_from_the_browser_session_already_open(
    local_limited: Settings, series: sf.Samples
) -> None:
    web = with_people(local_limited, follow_redirects=False)
    try:
        fraction_id = registered_fraction(web, series)
        assert sign_in(web).status_code == 303
        page = web.get(f"/review/{fraction_id}")
        attacker = TestClient(web.app, client=("203.0.113.66", 40000))
        assert [basic(attacker, "dr-who", f"guess {i}") for i in range(5)] == [401] * 5
        assert basic(attacker, "dr-who", PASSWORD) == 429
        neighbour = TestClient(web.app, client=(PEER, 40001))  # behind the same NAT address
        assert [basic(neighbour, f"name-{i}", "guess") for i in range(8)] == [401] * 8
        assert basic(neighbour, "terry", PASSWORD) == 429, "the address is locked out"
        signed = web.post(
            f"/review/{fraction_id}/sign",
            data={"csrf_token": csrf_of(page.text), "password": PASSWORD, "decision": "approved"},
        )
        assert signed.status_code == 201, signed.text
        locked = [
            (e.entity, e.entity_id, e.detail["client"]) for e in audit(web, "sign_in_locked_out")
        ]
        assert locked == [("user", "dr-who", "203.0.113.66"), ("client", PEER, PEER)]
    finally:
        web.__exit__(None, None, None)


def test_the_review_pages_sign_form_has_its_own_limit_within_the_session(
    local_limited: Settings, series: sf.Samples
) -> None:
    web = with_people(local_limited, follow_redirects=False)
    try:
        fraction_id = registered_fraction(web, series)
        sign_in(web)
        page = web.get(f"/review/{fraction_id}")
        form = {"csrf_token": csrf_of(page.text), "decision": "approved"}
        codes = [
            web.post(f"/review/{fraction_id}/sign", data=form | {"password": f"g{i}"}).status_code
            for i in range(6)
        ]
        assert codes == [401] * 5 + [429]
        right = web.post(f"/review/{fraction_id}/sign", data=form | {"password": PASSWORD})
        assert right.status_code == 429
    finally:
        web.__exit__(None, None, None)


def test_lock_outs_are_in_the_audit_trail_and_the_log_for_admins(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.ratelimit"):
        assert [basic(api, "dr-who", f"guess {i}") for i in range(5)] == [401] * 5
        assert basic(api, "dr-who", PASSWORD) == 429
    [event] = audit(api, "sign_in_locked_out")
    assert event.entity_id == "dr-who" and event.detail["client"] == PEER
    assert event.detail["scope"] == "user name"
    ctx = api.app.state.context  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        locked = ratelimit.locked_out_users(session, ctx.settings)
    assert list(locked) == ["dr-who"] and locked["dr-who"] > utcnow()
    assert any("dr-who" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records)


def test_x_forwarded_for_counts_only_when_the_peer_is_a_configured_proxy(
    tmp_path: Path, sqlite_url: str
) -> None:
    plain = sf.make_settings(tmp_path, sqlite_url, sign_in_max_failures_per_ip=3)
    client = with_people(plain)
    try:
        spoofed = [
            client.get(
                "/api/v1/courses",
                auth=(f"guess-{i}", "x"),
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(4)
        ]
        assert spoofed == [401] * 3 + [429], "a forged header does not escape the address limit"
    finally:
        client.__exit__(None, None, None)
    (tmp_path / "p").mkdir()
    proxied = sf.make_settings(
        tmp_path / "p",
        f"sqlite:///{tmp_path / 'p' / 'db' / 'mvct-guide.sqlite3'}",
        sign_in_max_failures_per_ip=3,
        trusted_proxies=f"{PEER}/32, 10.0.0.0/8",
    )
    client = with_people(proxied)
    try:
        for _ in range(3):
            client.get("/api/v1/courses", auth=("a", "x"), headers={"X-Forwarded-For": "1.2.3.4"})
        blocked = client.get(
            "/api/v1/courses", auth=("a", "x"), headers={"X-Forwarded-For": "1.2.3.4"}
        )
        assert blocked.status_code == 429
        other = client.get(
            "/api/v1/courses",
            auth=("dr-who", PASSWORD),
            headers={"X-Forwarded-For": "5.6.7.8, 10.1.1.1"},  # the client, then a trusted hop
        )
        assert other.status_code == 200
    finally:
        client.__exit__(None, None, None)


def test_the_server_does_not_let_uvicorn_trust_forwarded_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from app.cli import main

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("MVCT_GUIDE_START_WORKERS", "false")
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 0
    assert seen["proxy_headers"] is False


def test_the_sign_in_page_creates_no_session_until_sign_in(api: TestClient) -> None:
    for _ in range(5):
        assert api.get("/login").status_code == 200
    assert session_count(api) == 0
    api.follow_redirects = False
    assert sign_in(api).status_code == 303
    assert session_count(api) == 1
    assert api.get("/worklist").status_code == 200


def test_a_sign_in_form_without_its_cookie_is_refused(api: TestClient) -> None:
    form = api.get("/login")
    api.cookies.clear()
    response = api.post(
        "/login",
        data={"username": "dr-who", "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert session_count(api) == 0


def test_refused_sign_ins_are_audited_once_per_user_and_minute_with_a_count(
    tmp_path: Path, sqlite_url: str
) -> None:
    roomy = sf.make_settings(
        tmp_path, sqlite_url, sign_in_max_failures_per_user=50, sign_in_max_failures_per_ip=50
    )
    client = with_people(roomy)
    try:
        assert [basic(client, "dr-who", f"guess {i}") for i in range(12)] == [401] * 12
        assert basic(client, "my password is s3cr3t", "x") == 401
        ctx = client.app.state.context  # type: ignore[attr-defined]
        with ctx.writer() as session:
            ratelimit.flush_audit(session, now=utcnow() + timedelta(minutes=2))
            session.commit()
        events = audit(client, "sign_in_failed")
        assert sorted(e.entity_id for e in events) == ["(unknown)", "dr-who"]
        mine = next(e for e in events if e.entity_id == "dr-who")
        assert mine.detail["failures"] == 12 and mine.detail["clients"] == [PEER]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", mine.detail["minute"])
        assert "s3cr3t" not in str([(e.entity_id, e.detail) for e in events])
    finally:
        client.__exit__(None, None, None)


def audit(client: TestClient, action: str) -> list[AuditEvent]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(query))


def session_count(client: TestClient) -> int:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(BrowserSession)) or 0)


__all__ = ["review_data"]
