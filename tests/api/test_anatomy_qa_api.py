"""Anatomy alert levels and daily-QA verdicts through the API, without registration workers.

The registration result of each fraction is what a perfect registration of the known simulated
motion answers (or deliberately wrong, or untrusted); anatomy and phantom figures are measured by
the core on the same simulated images, so only the engine run is skipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import update

from app.db.models import Job, JobStatus, RegistrationResult, Role
from app.db.models_anatomy import FractionFigures
from app.services.anatomy import ALERT_WARNING
from app.services.daily_qa import unacknowledged_failures
from registration.anatomy import measure_anatomy
from registration.couch import (
    CouchCorrection,
    Dof,
    correction_as_planning_to_daily,
    couch_correction_6dof,
)
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps
from registration.qa_phantom import measure_phantom_image, qa_phantom_ct
from registration.result import Mode, RegistrationQuality
from registration.result import RegistrationResult as EngineResult
from registration.simulate import MvctSimulationOptions, simulate_mvct

HFS = PatientPosition.HFS
ORIGIN = LpsPoint(0.0, 0.0, 0.0)
PASSWORD = "correct horse"
MACHINE = "TOMO-API"


def _store(
    client: TestClient,
    fraction_id: int,
    motion: RigidTransformLps,
    iso: LpsPoint,
    *,
    trusted: bool = True,
    figures: dict[str, Any] | None = None,
    phantom: dict[str, Any] | None = None,
) -> None:
    """The result a registration of ``motion`` answers, stored as the job would store it."""
    six = couch_correction_6dof(motion, iso, HFS)
    result = EngineResult(
        planning_to_daily_lps=motion,
        couch_correction=six,
        couch_correction_6dof=six,
        isocenter_lps_mm=iso,
        patient_position=HFS,
        dof=Dof.SIX,
        mode=Mode.TISSUE,
        quality=RegistrationQuality(1.2, 0.98, 400, 0.8, 0.2, trusted),
        trusted=trusted,
        engine_version="test",
    )
    ctx = client.app.state.context
    with ctx.writer() as session:
        session.add(RegistrationResult.of(fraction_id, result))
        if figures is not None or phantom is not None:
            session.add(FractionFigures(fraction_id=fraction_id, anatomy=figures, phantom=phantom))
        session.execute(
            update(Job).where(Job.fraction_id == fraction_id).values(status=JobStatus.DONE.value)
        )
        session.commit()


def _post(client: TestClient, headers: dict[str, str], mvct: Path, **data: Any) -> Any:
    planning = data.pop("planning", None)
    files = sf.upload("mvct", mvct) + (sf.upload("planning", planning) if planning else [])
    return client.post(
        "/api/v1/fractions", params={"wait": "false"}, headers=headers, data=data, files=files
    )


def test_a_course_s_alert_levels_apply_to_its_stored_figures_at_once(
    client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(client, "console")
    sf.add_person(client, "dr-a", Role.PHYSICIAN, PASSWORD)
    iso = series.isocenter
    posted = _post(
        client,
        console,
        series.mvcts[0],
        patient_id=sf.PATIENT_ID,
        planning=series.planning,
        isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
    ).json()
    planning = read_ct_series(series.planning).image
    daily = read_ct_series(series.mvcts[0]).image
    figures = measure_anatomy(planning, daily, series.motions[0], isocenter=iso)
    _store(client, posted["id"], series.motions[0], iso, figures=figures.to_dict())
    url = f"/api/v1/fractions/{posted['id']}"
    before = client.get(url, headers=console).json()
    assert before["anatomy"]["alert"]["alert"] is False
    assert abs(before["anatomy"]["figures"]["mean_surface_mm"]) < 1.0

    settings_url = f"/api/v1/courses/{posted['course_id']}/anatomy-settings"
    refused = client.put(settings_url, json={"surface_change_mm": -1}, auth=("dr-a", PASSWORD))
    assert refused.status_code == 422
    level = abs(figures.mean_surface_mm) / 2  # half of what this fraction measured
    changed = client.put(settings_url, json={"surface_change_mm": level}, auth=("dr-a", PASSWORD))
    assert changed.status_code == 200, changed.text
    assert changed.json()["area_change_percent"] == 10.0  # the others keep the defaults
    after = client.get(url, headers=console).json()
    assert after["anatomy"]["alert"]["reasons"] == ["surface"]
    assert ALERT_WARNING in after["warnings"] and after["trusted"] is True


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The phantom's reference CT and a fine-pitch scan after the couch moved it (5, −3, 2) mm."""
    root = tmp_path_factory.mktemp("phantom")
    reference = qa_phantom_ct()
    write_ct_series(reference, root / "reference", patient_position=HFS, patient_id="QA")
    offset = CouchCorrection(5.0, -3.0, 2.0, 0.0, 0.0, 0.0)
    motion = correction_as_planning_to_daily(offset, ORIGIN, HFS).inverse()
    options = MvctSimulationOptions(pixel_spacing_mm=2.0, scan_center=ORIGIN, slice_spacing_mm=2.0)
    scans = []
    for seed in range(2):
        daily = simulate_mvct(reference, motion, dataclasses.replace(options, random_seed=seed))
        write_ct_series(
            daily,
            root / f"scan-{seed}",
            patient_position=HFS,
            patient_id="QA",
            extra={"StationName": MACHINE},
        )
        scans.append(root / f"scan-{seed}")
    figures = measure_phantom_image(daily, motion)
    return {"reference": root / "reference", "scans": scans, "motion": motion, "figures": figures}


def _qa_course(client: TestClient, phantom: dict[str, Any], **machine: Any) -> int:
    console = sf.add_api_key(client, "qa-console")
    sf.add_person(client, "phys", Role.PHYSICIST, PASSWORD)
    course = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": "QA", "isocenter": "0,0,0"},
        files=sf.upload("planning", phantom["reference"]),
    )
    assert course.status_code in (200, 201), course.text
    body = {"course_id": course.json()["id"], "machine": MACHINE, **machine}
    made = client.post("/api/v1/qa/machines", json=body, auth=("phys", PASSWORD))
    assert made.status_code == 201, made.text
    return int(course.json()["id"])


def test_an_untrusted_qa_match_needs_review_and_raises_no_banner(
    client: TestClient, phantom: dict[str, Any]
) -> None:
    course_id = _qa_course(client, phantom, treats_srs_sbrt=True)
    console = sf.add_api_key(client, "console")
    posted = _post(
        client,
        console,
        phantom["scans"][0],
        patient_id="QA",
        course_id=course_id,
        qa_expected_offset="0,0,0",  # wrong by 5 mm: would fail if trusted
    ).json()
    _store(client, posted["id"], phantom["motion"], ORIGIN, trusted=False)
    qa = client.get(f"/api/v1/fractions/{posted['id']}", headers=console).json()["qa"]
    assert qa["verdict"] == "needs review", qa
    assert qa["positioning"]["axes"][0]["tolerance"] == 1.0  # TG-142 SRS/SBRT
    with client.app.state.context.sessions() as db:
        assert unacknowledged_failures(db) == {}


def test_an_offset_entered_on_the_page_judges_the_scan_with_its_sign(
    client: TestClient, phantom: dict[str, Any]
) -> None:
    course_id = _qa_course(client, phantom)
    console = sf.add_api_key(client, "console")
    sf.add_person(client, "ther", Role.THERAPIST, PASSWORD)
    posted = _post(client, console, phantom["scans"][1], patient_id="QA", course_id=course_id)
    assert posted.status_code == 202, posted.text
    fraction_id = posted.json()["id"]
    _store(client, fraction_id, phantom["motion"], ORIGIN)
    url = f"/api/v1/fractions/{fraction_id}"
    assert client.get(url, headers=console).json()["qa"]["verdict"] == "no offset"

    offset_url = f"{url}/qa-offset"
    applied = {"lateral_mm": 5.0, "longitudinal_mm": -3.0, "vertical_mm": 2.0}
    wrong_sign = {"lateral_mm": -5.0, "longitudinal_mm": 3.0, "vertical_mm": -2.0}
    assert client.put(offset_url, json=applied, headers=console).status_code == 403
    failed = client.put(offset_url, json=wrong_sign, auth=("ther", PASSWORD)).json()
    assert failed["verdict"] == "failed"  # the correction itself entered as the offset
    passed = client.put(offset_url, json=applied, auth=("ther", PASSWORD)).json()
    assert passed["verdict"] == "passed", passed
    assert [a["expected"] for a in passed["positioning"]["axes"][:3]] == [-5.0, 3.0, -2.0]


def test_qa_expected_offset_for_a_patient_course_is_refused_and_stores_nothing(
    client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(client, "console")
    first = _post(
        client, console, series.mvcts[0], patient_id=sf.PATIENT_ID, planning=series.planning
    ).json()
    refused = _post(
        client,
        console,
        series.mvcts[1],
        patient_id=sf.PATIENT_ID,
        course_id=first["course_id"],
        qa_expected_offset="1,2,3",
    )
    assert refused.status_code == 422
    assert "QA phantom scans" in refused.json()["detail"]
    log = client.get(f"/api/v1/patients/{sf.PATIENT_ID}/fractions", headers=console).json()
    assert len(log["fractions"]) == 1


def test_a_baseline_set_by_the_physicist_judges_the_image_figures(
    client: TestClient, phantom: dict[str, Any]
) -> None:
    course_id = _qa_course(client, phantom)
    console = sf.add_api_key(client, "console")
    posted = _post(
        client,
        console,
        phantom["scans"][1],
        patient_id="QA",
        course_id=course_id,
        qa_expected_offset="5,-3,2",
    ).json()
    measured = phantom["figures"]
    _store(client, posted["id"], phantom["motion"], ORIGIN, phantom=measured.to_dict())
    url = f"/api/v1/fractions/{posted['id']}"
    first = client.get(url, headers=console).json()["qa"]
    assert first["verdict"] == "passed" and first["image_checks"] == []  # the baseline itself

    baseline_url = f"/api/v1/qa/machines/{MACHINE}/baseline"
    quieter = {
        "noise_hu": measured.noise_hu / 2,  # today's noise is 100 % above: beyond +25 %
        "uniformity_hu": measured.uniformity_hu,
        "inserts": dict(measured.inserts),
    }
    assert client.put(baseline_url, json=quieter, headers=console).status_code == 403
    assert client.put(baseline_url, json=quieter, auth=("phys", PASSWORD)).status_code == 200
    judged = client.get(url, headers=console).json()["qa"]
    assert judged["verdict"] == "failed", judged
    assert [c["figure"] for c in judged["image_checks"] if not c["passed"]] == ["noise_hu"]

    assert client.put(baseline_url, auth=("phys", PASSWORD)).status_code == 200
    assert client.get(url, headers=console).json()["qa"]["verdict"] == "passed"
