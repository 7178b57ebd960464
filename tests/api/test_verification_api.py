"""POST /api/v1/fractions/{id}/verification: the MVCT after the couch move gives the residual.

Results are written directly (tests/e2e/review_data.py): the verification scan's "registration"
is the known motion left after a couch move, so the residual it must show is known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import review_data
import service_fixtures as sf
from service_fixtures import TestClient

from app.db.models_dicom import DicomSeries
from app.dicom import DicomError
from app.dicom.series_ingest import mvct_fraction
from registration.couch import couch_correction_6dof
from registration.frames import PatientPosition, rot_z
from registration.simulate import rigid_about


def post_verification(
    client: TestClient, headers: dict[str, str], fraction_id: int, mvct: Path
) -> Any:
    return client.post(
        f"/api/v1/fractions/{fraction_id}/verification",
        headers=headers,
        files=review_data.upload("mvct", mvct),
    )


def test_a_verification_scan_is_registered_as_the_residual_and_shown_with_its_fraction(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    iso = series.isocenter
    fraction = review_data.post_fraction(
        client,
        console,
        series.mvcts[0],
        planning=series.planning,
        patient_id=sf.PATIENT_ID,
        isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
    )
    ctx = client.app.state.context  # type: ignore[attr-defined]
    review_data.store_result(
        ctx,
        fraction["id"],
        review_data.known_result(series.motions[0], iso, PatientPosition.HFS),
    )
    answer = post_verification(client, console, fraction["id"], series.mvcts[4])
    assert answer.status_code == 202, answer.text
    scan = answer.json()
    assert scan["verifies_fraction_id"] == fraction["id"]
    assert scan["fraction_number"] == fraction["fraction_number"]
    assert scan["course_id"] == fraction["course_id"]
    # what is left after the move: 0.8 mm and 0.3° about the isocentre
    left = rigid_about(iso, rot_z(0.3), (0.8, 0.0, 0.0))
    review_data.store_result(
        ctx, scan["id"], review_data.known_result(left, iso, PatientPosition.HFS)
    )
    shown = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
    expected = couch_correction_6dof(left, iso, PatientPosition.HFS).rounded().as_dict()
    assert shown["verification"]["fraction_id"] == scan["id"]
    assert shown["verification"]["residual_6dof"] == expected
    assert shown["couch_correction_6dof"] != expected  # the set-up error itself stays
    log = client.get(f"/api/v1/patients/{sf.PATIENT_ID}/fractions", headers=console).json()
    assert [f["fraction_id"] for f in log["fractions"]] == [fraction["id"]]
    again = post_verification(client, console, fraction["id"], series.mvcts[4])
    assert again.status_code == 200
    assert again.json()["id"] == scan["id"]


def test_a_verification_of_a_verification_or_of_no_fraction_is_refused_with_words(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    fraction = review_data.post_fraction(
        client, console, series.mvcts[0], planning=series.planning, patient_id=sf.PATIENT_ID
    )
    scan = post_verification(client, console, fraction["id"], series.mvcts[1]).json()
    nested = post_verification(client, console, scan["id"], series.mvcts[2])
    assert nested.status_code == 422
    assert f"verification scan of fraction {fraction['id']}" in nested.json()["detail"]
    missing = post_verification(client, console, 999_999, series.mvcts[2])
    assert missing.status_code == 404
    used = post_verification(client, console, fraction["id"], series.mvcts[0])
    assert used.status_code == 422
    assert "not as a verification" in used.json()["detail"]


def test_over_dicom_a_series_matching_the_pattern_verifies_the_patients_fraction_of_today(
    tmp_path: Path, sqlite_url: str, series: sf.Samples
) -> None:
    settings = sf.make_settings(tmp_path, sqlite_url, dicom_verification_pattern=r"verif")
    with TestClient(sf.create_app(settings)) as client:
        console = sf.add_api_key(client, "console-1")
        ctx = client.app.state.context  # type: ignore[attr-defined]
        scan_series = DicomSeries(
            series_instance_uid="1.2.3.999",
            patient_id=sf.PATIENT_ID,
            series_description="MVCT Verification",
            source="dicom",
            sender="TOMO",
            kind="mvct",
            state="pending",
        )
        files = [(p.name, p) for p in sf.Samples.files(series, series.mvcts[6])]
        with pytest.raises(DicomError, match="has no fraction received today to verify"):
            mvct_fraction(ctx, scan_series, files, "dicom:TOMO")
        fraction = review_data.post_fraction(
            client, console, series.mvcts[0], planning=series.planning, patient_id=sf.PATIENT_ID
        )
        course_id, scan_id = mvct_fraction(ctx, scan_series, files, "dicom:TOMO") or (0, 0)
        assert course_id == fraction["course_id"]
        scan = client.get(f"/api/v1/fractions/{scan_id}", headers=console).json()
        assert scan["verifies_fraction_id"] == fraction["id"]
        shown = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
        assert shown["verification"]["fraction_id"] == scan_id
