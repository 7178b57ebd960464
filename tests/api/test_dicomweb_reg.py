"""``GET /api/v1/fractions/{id}/registration.dcm``: the REG carries the right matrix, the right way.

The registration result is written into the database directly (no workers here): the matrix is
the simulated motion of the MVCT, so what the REG must carry is known exactly. Read back with
pydicom; PS3.3 Equation C.20.2-3 turns the two items into planning → MVCT again.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import service_fixtures as sf
from pydicom import dcmread
from pydicom.dataset import Dataset
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import Fraction, Job, RegistrationResult, Role, User
from app.db.models_dicom import DicomRegExport
from app.db.models_signoff import MEANINGS, Decision, Signoff
from app.db.signoff_repo import add_signoff
from app.dicom.reg_build import item_matrix, planning_to_daily_of
from app.dicom.reg_send import Destination, RegSender
from app.services.accounts import add_user
from registration.couch import (
    CouchCorrection,
    correction_as_planning_to_daily,
    couch_correction_6dof,
)
from registration.frames import PatientPosition
from registration.geometry import RigidTransformLps

TOLERANCE = 1e-9


def system_tool(name: str) -> str:
    """A Debian binary, never a same-named script of the virtualenv (pynetdicom ships some)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and not candidate.resolve().is_relative_to(Path(sys.prefix)):
            return str(candidate)
    pytest.skip(f"{name} is not installed (apt-get install dcmtk)")


def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registered_fraction(client: TestClient, headers: dict[str, str], samples: sf.Samples) -> int:
    """Post a fraction and give it the result a perfect registration of its motion would give."""
    response = client.post(
        "/api/v1/fractions",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("mvct", samples.mvcts[3]) + sf.upload("planning", samples.planning),
    )
    assert response.status_code == 202, response.text
    fraction_id = int(response.json()["id"])
    motion, iso = samples.motions[3], samples.isocenter
    couch = couch_correction_6dof(motion, iso, PatientPosition.HFS).as_dict()
    result: dict[str, Any] = {
        "planning_to_daily_lps": [list(row) for row in motion.matrix],
        "couch_correction": couch,
        "couch_correction_6dof": couch,
        "isocenter_lps_mm": [iso.x_mm, iso.y_mm, iso.z_mm],
        "patient_position": "HFS",
        "dof": 6,
        "mode": "tissue",
        "quality": {
            "final_metric": 1.0,
            "overlap_fraction": 1.0,
            "iterations": 1,
            "seconds": 0.1,
            "second_estimate_disagreement_mm": 0.1,
            "converged": True,
        },
        "trusted": True,
        "warnings": [],
        "engine_version": "test",
    }
    with client.app.state.context.writer() as session:
        session.add(
            RegistrationResult(fraction_id=fraction_id, result=result, trusted=True, **couch)
        )
        job = session.query(Job).filter_by(fraction_id=fraction_id).one()
        job.status = "done"
        session.commit()
    return fraction_id


def sign(client: TestClient, fraction_id: int, decision: Decision, correction: Any = None) -> None:
    ctx = client.app.state.context
    with ctx.writer() as session:
        signer = session.query(User).filter_by(username="dr-reg").one_or_none()
        if signer is None:
            add_user(session, "dr-reg", Role.PHYSICIAN, "Dr Reg", "correct horse", "test")
            signer = session.query(User).filter_by(username="dr-reg").one()
        values = correction.as_dict() if correction is not None else {}
        signoff = Signoff(
            fraction_id=fraction_id,
            decision=decision.value,
            signer_user_id=signer.id,
            printed_name=signer.full_name,
            meaning=MEANINGS[decision],
            signed_at=datetime.now(UTC),
            override_large_shift=False,
            **values,
        )
        add_signoff(session, signoff, session.get_one(Fraction, fraction_id), signer)
        session.commit()


def get_reg(client: TestClient, headers: dict[str, str], fraction_id: int) -> Dataset:
    response = client.get(f"/api/v1/fractions/{fraction_id}/registration.dcm", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    return dcmread(io.BytesIO(response.content))


@pytest.fixture
def fraction_id(client: TestClient, console: dict[str, str], series: sf.Samples) -> int:
    return registered_fraction(client, console, series)


def test_the_reg_of_an_unsigned_fraction_maps_planning_to_mvct_as_planning_to_daily_lps(
    client: TestClient, console: dict[str, str], fraction_id: int, series: sf.Samples
) -> None:
    reg = get_reg(client, console, fraction_id)
    api = client.get(f"/api/v1/fractions/{fraction_id}", headers=console).json()
    expected = np.array(api["planning_to_daily_lps"])
    assert np.abs(planning_to_daily_of(reg) - expected).max() < TOLERANCE
    # the standard's direction: the MVCT item maps MVCT points into the registered (planning) RCS
    moved = series.motions[3].apply(series.isocenter).as_array()
    mvct_item = item_matrix(reg.RegistrationSequence[1])
    assert np.allclose(mvct_item @ [*moved, 1.0], [*series.isocenter.as_array(), 1.0])
    assert np.array_equal(item_matrix(reg.RegistrationSequence[0]), np.eye(4))
    assert reg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.1"
    assert reg.Modality == "REG"
    assert reg.ContentLabel == "UNSIGNED"


def test_the_reg_references_every_planning_and_mvct_image_and_their_frames(
    client: TestClient, console: dict[str, str], fraction_id: int, series: sf.Samples
) -> None:
    reg = get_reg(client, console, fraction_id)
    planning = [dcmread(p, stop_before_pixels=True) for p in sorted(series.planning.iterdir())]
    mvct = [dcmread(p, stop_before_pixels=True) for p in sorted(series.mvcts[3].iterdir())]
    for item, images in zip(reg.RegistrationSequence, (planning, mvct), strict=True):
        assert item.FrameOfReferenceUID == images[0].FrameOfReferenceUID
        referenced = {r.ReferencedSOPInstanceUID for r in item.ReferencedImageSequence}
        assert referenced == {i.SOPInstanceUID for i in images}
    codes = [
        i.MatrixRegistrationSequence[0].RegistrationTypeCodeSequence[0].CodeValue
        for i in reg.RegistrationSequence
    ]
    assert codes == ["125021", "125024"]
    assert reg.FrameOfReferenceUID == planning[0].FrameOfReferenceUID
    assert reg.StudyInstanceUID == mvct[0].StudyInstanceUID
    other = reg.StudiesContainingOtherReferencedInstancesSequence[0]
    assert other.StudyInstanceUID == planning[0].StudyInstanceUID


def test_the_same_state_gives_the_same_reg_and_a_sign_off_gives_a_new_instance(
    client: TestClient, console: dict[str, str], fraction_id: int
) -> None:
    first = get_reg(client, console, fraction_id)
    assert get_reg(client, console, fraction_id).SOPInstanceUID == first.SOPInstanceUID
    sign(client, fraction_id, Decision.APPROVED)
    approved = get_reg(client, console, fraction_id)
    assert approved.SOPInstanceUID != first.SOPInstanceUID
    assert approved.SeriesInstanceUID == first.SeriesInstanceUID
    assert approved.ContentLabel == "APPROVED"
    assert str(approved.ContentCreatorName) == "Dr Reg"
    assert np.abs(planning_to_daily_of(approved) - planning_to_daily_of(first)).max() < TOLERANCE


def test_an_adjusted_sign_off_puts_the_signed_correction_into_the_reg(
    client: TestClient, console: dict[str, str], fraction_id: int, series: sf.Samples
) -> None:
    adjusted = CouchCorrection(-1.0, 2.0, 0.5, 0.0, -0.5, 0.0)
    sign(client, fraction_id, Decision.APPROVED_ADJUSTED, adjusted)
    reg = get_reg(client, console, fraction_id)
    expected = correction_as_planning_to_daily(adjusted, series.isocenter, PatientPosition.HFS)
    assert np.abs(planning_to_daily_of(reg) - expected.as_array()).max() < TOLERANCE
    assert not np.allclose(expected.as_array(), series.motions[3].as_array(), atol=0.1)
    code = reg.RegistrationSequence[1].MatrixRegistrationSequence[0].RegistrationTypeCodeSequence
    assert code[0].CodeValue == "125025"
    assert reg.ContentLabel == "ADJUSTED"
    back = couch_correction_6dof(
        RigidTransformLps.from_array(planning_to_daily_of(reg)),
        series.isocenter,
        PatientPosition.HFS,
    )
    assert np.allclose(list(back.as_dict().values()), list(adjusted.as_dict().values()), atol=1e-6)


def test_a_rejected_registration_has_no_reg(
    client: TestClient, console: dict[str, str], fraction_id: int
) -> None:
    sign(client, fraction_id, Decision.REJECTED)
    response = client.get(f"/api/v1/fractions/{fraction_id}/registration.dcm", headers=console)
    assert response.status_code == 409
    assert "rejected" in response.json()["detail"]


def test_a_fraction_not_registered_yet_has_no_reg_and_an_unknown_one_is_not_found(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    response = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("mvct", series.mvcts[4]) + sf.upload("planning", series.planning),
    )
    queued = response.json()["id"]
    response = client.get(f"/api/v1/fractions/{queued}/registration.dcm", headers=console)
    assert response.status_code == 409
    assert "no registration yet (status queued)" in response.json()["detail"]
    assert client.get("/api/v1/fractions/999/registration.dcm", headers=console).status_code == 404


def test_after_sign_off_the_reg_is_sent_by_c_store_once_to_the_configured_destination(
    client: TestClient, console: dict[str, str], fraction_id: int, tmp_path: Path
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
        ctx = client.app.state.context
        sender = RegSender(ctx, Destination.parse(f"ARCHIVE@127.0.0.1:{port}"))
        assert sender.run_once() == 0  # nothing signed yet
        wait_listening(port)
        sign(client, fraction_id, Decision.APPROVED)
        assert sender.run_once() == 1
        assert sender.run_once() == 0  # once per sign-off
        files = sorted(received.iterdir())
        assert len(files) == 1
        sent = dcmread(files[0])
        assert sent.SOPInstanceUID == get_reg(client, console, fraction_id).SOPInstanceUID
        assert sent.ContentLabel == "APPROVED"
    finally:
        peer.terminate()
        peer.wait(30)
    with ctx.sessions() as session:
        exports = session.scalars(select(DicomRegExport)).all()
        assert [(e.status, e.attempts) for e in exports] == [("sent", 1)]
