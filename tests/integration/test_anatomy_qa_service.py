"""Anatomy-change alerts and daily imaging QA through the service with real warm workers.

Anatomy: the job measures every registered fraction after the rigid match; a simulated weight
loss (the body outline eroded by 8 mm) is flagged on that fraction only, with the warning in the
fraction JSON, on the worklist and in the weekly report, and a physician acknowledges it.

QA (sign under test): the couch moved the phantom by a known offset O from the aligned set-up and
``qa_expected_offset`` = O (the offset APPLIED); the registration must find the correction that
undoes it (−O for translations) within 0.3 mm at 2 mm slices. A couch that moved 2.5 mm further
than the offset entered fails on that axis, shows the machine's banner until a physicist
acknowledges it, and the monthly CSV carries the error.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient

from app.db.models import AuditEvent, Role
from app.jobs.pool import WorkerPool
from app.services.anatomy import ALERT_WARNING
from app.services.daily_qa import unacknowledged_failures
from app.web.worklist import rows_of_day, today
from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.qa_phantom import qa_phantom_ct
from registration.simulate import MvctSimulationOptions, simulate_mvct
from registration.simulate_anatomy import with_weight_loss

pytestmark = pytest.mark.slow

HFS = PatientPosition.HFS
MACHINE = "TOMO-QA-1"
QA_PATIENT = "QA-PHANTOM"
ORIGIN = LpsPoint(0.0, 0.0, 0.0)
#: a 120 mm fine-pitch scan of the whole phantom (as registration/qa_phantom.py asks)
QA_SIM = MvctSimulationOptions(pixel_spacing_mm=1.0, scan_center=ORIGIN, slice_spacing_mm=2.0)
PASSWORD = "correct horse"


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    settings = sf.make_settings(tmp_path, sqlite_url, start_workers=True)
    with TestClient(sf.create_app(settings, pool=warm_pool)) as test_client:
        yield test_client


def _auth(username: str) -> tuple[str, str]:
    return (username, PASSWORD)


def _iso_text(point: LpsPoint) -> str:
    return f"{point.x_mm},{point.y_mm},{point.z_mm}"


def _post(client: TestClient, headers: dict[str, str], mvct: Path, **data: Any) -> Any:
    planning = data.pop("planning", None)
    files = sf.upload("mvct", mvct) + (sf.upload("planning", planning) if planning else [])
    response = client.post("/api/v1/fractions", headers=headers, data=data, files=files)
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture(scope="module")
def weight_loss_mvct(series: sf.Samples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MVCT of the planning CT with the body outline eroded by 8 mm (fat replaced by air)."""
    planning = read_ct_series(series.planning)
    thinner = with_weight_loss(planning.image, 8.0)
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.5, slice_spacing_mm=6.0, scan_length_mm=72.0, random_seed=77
    )
    daily = simulate_mvct(thinner, series.motions[1], options)
    folder = tmp_path_factory.mktemp("weight-loss")
    write_ct_series(
        daily, folder, patient_position=planning.patient_position, patient_id=sf.PATIENT_ID
    )
    return folder


def test_weight_loss_is_flagged_on_its_fraction_shown_everywhere_and_acknowledged(
    client: TestClient, series: sf.Samples, weight_loss_mvct: Path
) -> None:
    console = sf.add_api_key(client, "console")
    sf.add_person(client, "dr-a", Role.PHYSICIAN, PASSWORD)
    sf.add_person(client, "ther-b", Role.THERAPIST, PASSWORD)
    sf.add_person(client, "phys-c", Role.PHYSICIST, PASSWORD)
    iso = _iso_text(series.isocenter)
    first = _post(
        client,
        console,
        series.mvcts[0],
        patient_id=sf.PATIENT_ID,
        planning=series.planning,
        isocenter=iso,
    )
    second = _post(
        client,
        console,
        weight_loss_mvct,
        patient_id=sf.PATIENT_ID,
        course_id=first["course_id"],
        isocenter=iso,
    )

    ordinary, thinner = first["anatomy"], second["anatomy"]
    assert ordinary is not None and thinner is not None, (first, second)
    assert not ordinary["alert"]["alert"], ordinary
    assert ALERT_WARNING not in first["warnings"]
    assert abs(ordinary["figures"]["mean_surface_mm"]) < 2.0
    assert thinner["alert"]["alert"] and thinner["warning"] == ALERT_WARNING
    assert "surface" in thinner["alert"]["reasons"]
    # inward is negative; 8 mm eroded on the 2.9 mm planning pixels of the samples, measured
    # within about one planning pixel
    assert -11.0 < thinner["figures"]["mean_surface_mm"] < -5.0
    assert ALERT_WARNING in second["warnings"]
    assert second["trusted"] is True  # the alert never touches the registration's verdict

    ctx = client.app.state.context
    with ctx.sessions() as db:
        rows = {r.fraction_id: r for r in rows_of_day(db, ctx.store, today())}
    assert rows[second["id"]].anatomy_alert and not rows[first["id"]].anatomy_alert

    trend = client.get(f"/api/v1/courses/{first['course_id']}/anatomy", headers=console).json()
    assert [f["alert"]["alert"] for f in trend["fractions"]] == [False, True]

    utc_today = datetime.now(UTC).date().isoformat()
    report = client.get("/api/v1/reports/weekly", params={"since": utc_today}, auth=_auth("phys-c"))
    assert report.status_code == 200, report.text
    flagged = [n for n in report.json()["notes"] if n.startswith(ALERT_WARNING)]
    assert len(flagged) == 1 and sf.PATIENT_ID in flagged[0]

    url = f"/api/v1/fractions/{second['id']}/anatomy-acknowledgement"
    assert client.post(url, json={"note": "seen"}, auth=_auth("ther-b")).status_code == 403
    nothing = f"/api/v1/fractions/{first['id']}/anatomy-acknowledgement"
    assert client.post(nothing, json={"note": "x"}, auth=_auth("dr-a")).status_code == 422
    done = client.post(url, json={"note": "re-plan requested"}, auth=_auth("dr-a"))
    assert done.status_code == 201, done.text
    again = client.get(f"/api/v1/fractions/{second['id']}", headers=console).json()
    assert again["anatomy"]["acknowledged"]["note"] == "re-plan requested"
    with ctx.sessions() as db:
        actions = [e.action for e in db.query(AuditEvent).all()]
    assert "acknowledged_anatomy" in actions


@pytest.fixture(scope="module")
def phantom_scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The phantom's reference CT and two morning scans: the couch moved (5, −3, 2) mm, and
    (7.5, −3, 2) mm (2.5 mm too far laterally)."""
    root = tmp_path_factory.mktemp("qa")
    reference = qa_phantom_ct()
    folders = {"reference": root / "reference"}
    write_ct_series(reference, folders["reference"], patient_position=HFS, patient_id=QA_PATIENT)
    for name, offset, seed in (
        ("good", CouchCorrection(5.0, -3.0, 2.0, 0.0, 0.0, 0.0), 1),
        ("too-far", CouchCorrection(7.5, -3.0, 2.0, 0.0, 0.0, 0.0), 2),
    ):
        phantom_motion = correction_as_planning_to_daily(offset, ORIGIN, HFS).inverse()
        daily = simulate_mvct(
            reference, phantom_motion, dataclasses.replace(QA_SIM, random_seed=seed)
        )
        folders[name] = root / name
        write_ct_series(
            daily,
            folders[name],
            patient_position=HFS,
            patient_id=QA_PATIENT,
            extra={"StationName": MACHINE},
        )
    return folders


def test_daily_qa_recovers_the_offset_fails_a_couch_that_moved_too_far_and_exports_it(
    client: TestClient, phantom_scans: dict[str, Path]
) -> None:
    console = sf.add_api_key(client, "console")
    sf.add_person(client, "phys", Role.PHYSICIST, PASSWORD)
    course = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": QA_PATIENT, "isocenter": "0,0,0"},
        files=sf.upload("planning", phantom_scans["reference"]),
    )
    assert course.status_code in (200, 201), course.text
    course_id = course.json()["id"]
    made = client.post(
        "/api/v1/qa/machines",
        json={"course_id": course_id, "machine": MACHINE},
        auth=_auth("phys"),
    )
    assert made.status_code == 201, made.text
    assert made.json()["translation_tolerance_mm"] == 2.0  # TG-142 default, not SRS/SBRT

    scans = {}
    for name in ("good", "too-far"):
        scans[name] = _post(
            client,
            console,
            phantom_scans[name],
            patient_id=QA_PATIENT,
            course_id=course_id,
            qa_expected_offset="5,-3,2",
        )
    good, bad = scans["good"]["qa"], scans["too-far"]["qa"]
    assert scans["good"]["anatomy"] is None  # a QA scan is judged as QA, not anatomy
    assert good["verdict"] == "passed", good
    for axis in good["positioning"]["axes"][:3]:
        assert abs(axis["error"]) <= 0.3, good  # −offset recovered within 0.3 mm
    assert good["positioning"]["axes"][0]["expected"] == -5.0
    assert bad["verdict"] == "failed", bad
    lateral = bad["positioning"]["axes"][0]
    assert not lateral["passed"] and abs(lateral["error"] + 2.5) <= 0.3, lateral
    assert [a["passed"] for a in bad["positioning"]["axes"][1:3]] == [True, True]

    ctx = client.app.state.context
    with ctx.sessions() as db:
        failures = unacknowledged_failures(db)
    assert [d.fraction_id for d in failures[MACHINE]] == [scans["too-far"]["id"]]

    month = date.today().strftime("%Y-%m")
    export = client.get(
        f"/api/v1/qa/machines/{MACHINE}/export",
        params={"month": month, "format": "csv"},
        auth=_auth("phys"),
    )
    assert export.status_code == 200, export.text
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["verdict"] for r in rows] == ["passed", "failed"]
    assert float(rows[1]["error_lateral_mm"]) == pytest.approx(lateral["error"], abs=0.006)
    assert rows[1]["pass_lateral_mm"] == "false" and rows[0]["noise_hu"]
    pdf = client.get(
        f"/api/v1/qa/machines/{MACHINE}/export",
        params={"month": month, "format": "pdf"},
        auth=_auth("phys"),
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    ack = client.post(
        f"/api/v1/fractions/{scans['too-far']['id']}/qa-acknowledgement",
        json={"note": "couch re-calibrated, repeat scan passed"},
        auth=_auth("phys"),
    )
    assert ack.status_code == 201, ack.text
    with ctx.sessions() as db:
        assert unacknowledged_failures(db) == {}
