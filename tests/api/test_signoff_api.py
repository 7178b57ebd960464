"""POST /api/v1/fractions/{id}/signoff and the signature in GET /api/v1/fractions/{id}.

Fractions get a known registration result written directly (tests/e2e/review_data.py), so no
engine runs here; every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import review_data
import service_fixtures as sf
from service_fixtures import TestClient, create_app
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.db import signoff_repo
from app.db.models import AuditEvent, Fraction, Role, utcnow
from app.db.models_signoff import Signoff
from app.services import ratelimit
from registration.couch import CouchCorrection, Dof
from registration.frames import PatientPosition

PASSWORD = "correct horse"


@pytest.fixture
def people(client: TestClient) -> None:
    """A physician and a therapist, on SQLite and on PostgreSQL (what the database enforces)."""
    add_people(client)


@pytest.fixture
def local(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    """The app on SQLite with the same two people (rules that do not depend on the database)."""
    with TestClient(create_app(sf.make_settings(tmp_path, sqlite_url))) as test_client:
        add_people(test_client)
        yield test_client


def add_people(client: TestClient) -> None:
    sf.add_person(client, "dr-who", Role.PHYSICIAN, PASSWORD)
    sf.add_person(client, "terry", Role.THERAPIST, PASSWORD)


def registered(
    client: TestClient, series: sf.Samples, index: int = 0, **result: Any
) -> dict[str, Any]:
    """A fraction of MVCT ``index`` with the result a perfect registration would give."""
    ctx = client.app.state.context  # type: ignore[attr-defined]
    dof = Dof(result.pop("dof", 6))
    body = review_data.post_fraction(
        client,
        review_data.console_key(ctx, f"console-{index}"),
        series.mvcts[index],
        planning=series.planning,
        patient_id=sf.PATIENT_ID,
        isocenter=f"{series.isocenter.x_mm},{series.isocenter.y_mm},{series.isocenter.z_mm}",
        dof=str(int(dof)),
    )
    data = review_data.known_result(
        series.motions[index], series.isocenter, PatientPosition.HFS, dof, **result
    )
    review_data.store_result(ctx, body["id"], data)
    return data | {"id": body["id"]}


def sign(client: TestClient, fraction_id: int, **body: Any) -> Any:
    payload = {"username": "dr-who", "password": PASSWORD, "decision": "approved", **body}
    return client.post(f"/api/v1/fractions/{fraction_id}/signoff", json=payload)


def audit(client: TestClient, action: str) -> list[AuditEvent]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def signoff_rows(client: TestClient) -> list[Signoff]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(Signoff).order_by(Signoff.id)))


def test_a_physician_approves_and_the_console_reads_the_signature_bound_to_its_hash(
    client: TestClient, people: None, series: sf.Samples, console: dict[str, str]
) -> None:
    fraction = registered(client, series)
    before = datetime.now(UTC)
    response = sign(client, fraction["id"])
    assert response.status_code == 201, response.text
    signed = response.json()
    assert signed["decision"] == "approved"
    assert signed["meaning"] == "Approved couch correction"
    assert signed["printed_name"] == "dr-who (test)" and signed["signer_username"] == "dr-who"
    assert signed["couch_correction"] == fraction["couch_correction"]
    assert signed["override_large_shift"] is False and signed["reason"] is None
    view = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
    assert view["signoff"] == signed
    signed_at = datetime.fromisoformat(view["signoff"]["signed_at"])
    assert signed_at.utcoffset() is not None and signed_at.utcoffset().total_seconds() == 0
    assert before <= signed_at <= datetime.now(UTC)
    assert view["sign_off"]["meaning"] == "Approved couch correction"
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        row = session.get(Signoff, signed["id"])
        fraction_row = session.get(Fraction, fraction["id"])
        record = signoff_repo.signed_record(row, fraction_row, signoff_repo.signer_of(session, row))
        assert signoff_repo.verify(session, row)
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == signed["record_sha256"]
    assert record["couch_correction"] == fraction["couch_correction"]
    assert record["mvct_sha256"] and record["registration_result_id"] is not None
    [event] = audit(client, "signed_off")
    assert event.detail["record_sha256"] == signed["record_sha256"]


def test_an_adjusted_correction_needs_a_reason_and_is_stored_as_approved_adjusted(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series)
    adjusted = dict(fraction["couch_correction"])
    adjusted["lateral_mm"] = round(adjusted["lateral_mm"] + 1.0, 2)
    refused = sign(local, fraction["id"], couch_correction=adjusted)
    assert refused.status_code == 422
    assert "reason" in refused.json()["detail"]
    assert signoff_rows(local) == []
    response = sign(local, fraction["id"], couch_correction=adjusted, reason="spine match")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["decision"] == "approved_adjusted"
    assert body["meaning"] == "Approved adjusted couch correction"
    assert body["couch_correction"] == adjusted and body["reason"] == "spine match"
    [row] = signoff_rows(local)
    assert signoff_repo.signed_correction(row) == CouchCorrection(**adjusted)


def test_the_registrations_own_values_sent_back_are_not_an_adjustment(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series)
    response = sign(local, fraction["id"], couch_correction=fraction["couch_correction"])
    assert response.status_code == 201, response.text
    assert response.json()["decision"] == "approved"


def test_a_wrong_password_signs_nothing_and_is_audited(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series)
    response = sign(local, fraction["id"], password="wrong horse")
    assert response.status_code == 401
    assert "nothing was signed" in response.json()["detail"]
    unknown = sign(local, fraction["id"], username="nobody")
    assert unknown.status_code == 401
    assert signoff_rows(local) == []
    with local.app.state.context.writer() as session:  # type: ignore[attr-defined]
        ratelimit.flush_audit(session, utcnow() + timedelta(minutes=2))  # the minute is over
        session.commit()
    refusals = audit(local, "sign_in_failed")  # one row per user and minute, with a count
    assert sorted((e.entity_id, e.detail["failures"]) for e in refusals) == [
        ("(unknown)", 1),
        ("dr-who", 1),
    ]
    assert "wrong horse" not in json.dumps([e.detail for e in refusals])


def test_a_therapist_with_the_right_password_cannot_sign(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series)
    response = sign(local, fraction["id"], username="terry")
    assert response.status_code == 401  # the same answer as a wrong password: no oracle
    assert "only a physician can sign" in response.json()["detail"]
    assert signoff_rows(local) == []


def test_rejecting_needs_a_reason_and_signs_no_correction(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series)
    assert sign(local, fraction["id"], decision="rejected").status_code == 422
    response = sign(local, fraction["id"], decision="rejected", reason="re-image: air in rectum")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["decision"] == "rejected" and body["couch_correction"] is None
    assert body["meaning"].startswith("Rejected")
    [row] = signoff_rows(local)
    assert row.lateral_mm is None and row.yaw_deg is None
    assert signoff_repo.signed_correction(row) is None


def test_a_translation_of_5_mm_or_more_needs_an_explicit_override_reason(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series, lateral_error_mm=-4.0)
    assert abs(fraction["couch_correction"]["lateral_mm"]) >= 5.0
    refused = sign(local, fraction["id"])
    assert refused.status_code == 422
    assert "5 mm or more" in refused.json()["detail"]
    response = sign(local, fraction["id"], reason="known shift after mask refit")
    assert response.status_code == 201, response.text
    assert response.json()["override_large_shift"] is True
    assert response.json()["decision"] == "approved"


def test_a_later_signature_supersedes_the_earlier_one_and_both_are_kept(
    client: TestClient, people: None, series: sf.Samples, console: dict[str, str]
) -> None:
    fraction = registered(client, series)
    first = sign(client, fraction["id"]).json()
    second = sign(
        client, fraction["id"], decision="rejected", reason="patient moved", supersedes=first["id"]
    ).json()
    assert second["supersedes"] == first["id"]
    view = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
    assert view["signoff"]["id"] == second["id"] != first["id"]
    assert view["signoff"]["decision"] == "rejected"
    rows = signoff_rows(client)
    assert [r.id for r in rows] == [first["id"], second["id"]]
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        latest = signoff_repo.latest_signoffs(session, [fraction["id"], 999])
    assert list(latest) == [fraction["id"]] and latest[fraction["id"]].id == second["id"]


def test_signatures_are_append_only_at_database_level(
    client: TestClient, people: None, series: sf.Samples
) -> None:
    fraction = registered(client, series)
    assert sign(client, fraction["id"]).status_code == 201
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    for statement in ("UPDATE signoffs SET reason = 'edited'", "DELETE FROM signoffs"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    [row] = signoff_rows(client)
    assert row.reason is None


def test_approving_needs_a_registration_result_but_rejecting_does_not(
    local: TestClient, series: sf.Samples
) -> None:
    ctx = local.app.state.context  # type: ignore[attr-defined]
    body = review_data.post_fraction(
        local,
        review_data.console_key(ctx),
        series.mvcts[1],
        planning=series.planning,
        patient_id=sf.PATIENT_ID,
    )
    conflict = sign(local, body["id"])
    assert conflict.status_code == 409
    assert "no registration result" in conflict.json()["detail"]
    rejected = sign(local, body["id"], decision="rejected", reason="re-image")
    assert rejected.status_code == 201, rejected.text


def test_a_rotation_the_couch_cannot_apply_is_refused(
    local: TestClient, series: sf.Samples
) -> None:
    fraction = registered(local, series, index=2, dof=4)
    adjusted = dict(fraction["couch_correction"], pitch_deg=0.5)
    response = sign(local, fraction["id"], couch_correction=adjusted, reason="tilt")
    assert response.status_code == 422
    assert (
        "pitch" in response.json()["detail"] and "4 degrees of freedom" in response.json()["detail"]
    )
    assert signoff_rows(local) == []


def test_an_unknown_fraction_is_404_only_after_the_signature_is_checked(
    local: TestClient,
) -> None:
    assert sign(local, 4242, password="wrong horse").status_code == 401
    response = sign(local, 4242)
    assert response.status_code == 404
    assert "fraction 4242 does not exist" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "maybe"},
        {"couch_correction": {"lateral_mm": 1e9}},
        {"couch_correction": {"lateral_mm": "NaN", "longitudinal_mm": 0, "vertical_mm": 0,
                              "pitch_deg": 0, "roll_deg": 0, "yaw_deg": 0}},
    ],
)  # fmt: skip
def test_malformed_signatures_are_422_with_words(local: TestClient, body: dict[str, Any]) -> None:
    response = sign(local, 1, **body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_a_user_name_with_a_nul_byte_is_refused_not_a_server_error(
    client: TestClient, people: None
) -> None:
    # PostgreSQL text cannot hold NUL: the refusal's audit row must not carry it (found by fuzzing)
    response = sign(client, 1, username="dr-\x00who")
    assert response.status_code == 401
    assert "nothing was signed" in response.json()["detail"]
