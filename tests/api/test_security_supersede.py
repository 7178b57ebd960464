"""A signature never replaces another silently (issue 11, item 4).

A new signature on a fraction that is already signed names the signature it replaces
(``supersedes``: its id) and gives a reason; a stale page (not naming the latest) gets 409.
A REG already sent for a superseded approval is withdrawn by an IHE IOCM rejection note.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from pydicom import dcmread
from service_fixtures import TestClient
from sqlalchemy import select
from test_dicomweb_reg import free_port, get_reg, system_tool, wait_listening
from test_signoff_api import registered
from test_signoff_web import csrf_of, sign_in

from app.db.models import Role, User
from app.db.models_signoff import Signoff
from app.dicom.reg_send import Destination, RegSender
from app.errors import ServiceError
from app.services import signoff as signing
from app.services.signoff import SignRequest

PASSWORD = "correct horse"


@pytest.fixture
def two(client: TestClient) -> None:
    sf.add_person(client, "dr-who", Role.PHYSICIAN, PASSWORD)
    sf.add_person(client, "dr-no", Role.PHYSICIAN, PASSWORD)


def sign(client: TestClient, fraction_id: int, **body: Any) -> Any:
    payload = {"username": "dr-who", "password": PASSWORD, "decision": "approved", **body}
    return client.post(f"/api/v1/fractions/{fraction_id}/signoff", json=payload)


def rows(client: TestClient) -> list[Signoff]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(Signoff).order_by(Signoff.id)))


def test_a_second_signature_must_name_the_one_it_replaces_and_give_a_reason(
    client: TestClient, two: None, series: sf.Samples
) -> None:
    fraction = registered(client, series)
    first = sign(client, fraction["id"])
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]
    silent = sign(client, fraction["id"], username="dr-no")
    assert silent.status_code == 409
    assert f"supersedes={first_id}" in silent.json()["detail"]
    no_reason = sign(client, fraction["id"], decision="rejected", supersedes=first_id)
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    second = sign(
        client, fraction["id"], decision="rejected", reason="patient moved", supersedes=first_id
    )
    assert second.status_code == 201, second.text
    assert second.json()["supersedes"] == first_id
    stale = sign(client, fraction["id"], username="dr-no", reason="fine", supersedes=first_id)
    assert stale.status_code == 409
    assert f"signature {second.json()['id']}" in stale.json()["detail"]
    assert [r.id for r in rows(client)] == [first_id, second.json()["id"]]
    assert rows(client)[1].supersedes_id == first_id


def test_naming_a_signature_on_an_unsigned_fraction_is_a_conflict_too(
    client: TestClient, two: None, series: sf.Samples
) -> None:
    fraction = registered(client, series)
    response = sign(client, fraction["id"], supersedes=12345, reason="x")
    assert response.status_code == 409
    assert rows(client) == []


def test_the_review_page_sends_the_signature_it_shows_and_a_stale_page_gets_409(
    client: TestClient, two: None, series: sf.Samples
) -> None:
    fraction = registered(client, series)
    client.follow_redirects = False
    sign_in(client)
    stale_page = client.get(f"/review/{fraction['id']}")
    assert 'name="supersedes" value=""' in stale_page.text
    other = sign(client, fraction["id"], username="dr-no")
    assert other.status_code == 201
    form = {
        "csrf_token": csrf_of(stale_page.text),
        "password": PASSWORD,
        "decision": "rejected",
        "reason": "air in rectum",
    }
    refused = client.post(f"/review/{fraction['id']}/sign", data=form | {"supersedes": ""})
    assert refused.status_code == 409
    fresh = client.get(f"/review/{fraction['id']}")
    assert f'name="supersedes" value="{other.json()["id"]}"' in fresh.text
    signed = client.post(
        f"/review/{fraction['id']}/sign",
        data=form | {"supersedes": str(other.json()["id"]), "csrf_token": csrf_of(fresh.text)},
    )
    assert signed.status_code == 201, signed.text


def test_a_sent_reg_whose_approval_is_rejected_later_is_withdrawn_by_a_rejection_note(
    client: TestClient, two: None, series: sf.Samples, console: dict[str, str], tmp_path: Path
) -> None:
    storescp = system_tool("storescp")
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    peer = subprocess.Popen(
        [storescp, "-aet", "ARCHIVE", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        fraction = registered(client, series)
        ctx = client.app.state.context  # type: ignore[attr-defined]
        sender = RegSender(ctx, Destination.parse(f"ARCHIVE@127.0.0.1:{port}"))
        wait_listening(port)
        approved = sign(client, fraction["id"]).json()
        assert sender.run_once() == 1
        reg_uid = get_reg(client, console, fraction["id"]).SOPInstanceUID
        rejected = sign(
            client,
            fraction["id"],
            username="dr-no",
            decision="rejected",
            reason="wrong isocentre",
            supersedes=approved["id"],
        )
        assert rejected.status_code == 201, rejected.text
        sender.run_once()
        sender.run_once()  # once only
    finally:
        peer.terminate()
        peer.wait(30)
    documents = [dcmread(path) for path in sorted(received.iterdir())]
    notes = [d for d in documents if d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"]
    assert len(documents) == 2 and len(notes) == 1
    [note] = notes
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113037", "DCM")
    referenced = note.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert referenced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == reg_uid
    assert note.PatientID == sf.PATIENT_ID


def test_a_second_signer_waits_for_the_first_and_then_gets_409_not_a_second_signature(
    client: TestClient, two: None, series: sf.Samples
) -> None:
    """Two transactions sign the same unsigned fraction; the first has not committed yet when
    the second checks (without the row lock, both would see no signature and both would win)."""
    fraction = registered(client, series)
    ctx = client.app.state.context  # type: ignore[attr-defined]
    first = ctx.writer()
    signer = first.scalars(select(User).where(User.username == "dr-who")).one()
    signing._sign(first, SignRequest(fraction["id"], "dr-who", PASSWORD, "approved"), signer)
    outcome: list[object] = []

    def second() -> None:
        with ctx.writer() as session:
            other = session.scalars(select(User).where(User.username == "dr-no")).one()
            request = SignRequest(fraction["id"], "dr-no", PASSWORD, "approved")
            try:
                signing._sign(session, request, other)
                session.commit()
                outcome.append(201)
            except ServiceError as exc:
                outcome.append(exc.status_code)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)  # it waits for the first transaction's lock
    first.commit()
    first.close()
    thread.join(60)
    assert outcome == [409]
    assert len(rows(client)) == 1
