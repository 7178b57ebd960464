"""The physicist's daily-QA page in a real browser (Debian chromium, Playwright).

Two morning scans of the simulated phantom (fine pitch) with a known registration result, as in
``review_data``: the couch moved the phantom by the offset entered, (5, −3, 2) mm; on the second
day by 2.5 mm more laterally than entered. The phantom's image figures are measured on the
simulated MVCTs by the core. The page must plot the lateral error 0 and −2.5 mm against the
±2 mm tolerance, show the failure until a physicist acknowledges it (the worklist banner too),
and export the month as CSV with the same figures.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import review_data
import service_fixtures as sf
from e2e_support import PASSWORD, LiveServer, serving, sign_in

from app.db.models import Role
from app.db.models_anatomy import FractionFigures
from app.main import create_app
from app.services.accounts import add_user
from registration.anatomy import measure_anatomy
from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.qa_phantom import measure_phantom_image, qa_phantom_ct
from registration.simulate import MvctSimulationOptions, simulate_mvct
from registration.simulate_anatomy import with_weight_loss

HFS = PatientPosition.HFS
ORIGIN = LpsPoint(0.0, 0.0, 0.0)
MACHINE = "TOMO-E2E"
PHYSICIST = ("phys-e2e", "E2E Physicist")
PHYSICIAN = ("dr-anatomy", "Dr Anatomy")
SIM = MvctSimulationOptions(pixel_spacing_mm=1.0, scan_center=ORIGIN, slice_spacing_mm=2.0)
ENTERED = "5,-3,2"


@pytest.fixture(scope="module")
def qa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, list[int]]]:
    """A server of its own (no workers) with a QA course and two judged scans."""
    root = tmp_path_factory.mktemp("qa-e2e")
    (root / "db").mkdir()
    app = create_app(sf.make_settings(root, f"sqlite:///{root / 'db' / 'qa.sqlite3'}"))
    ctx = app.state.context
    with serving(app) as base_url:  # the service's start-up makes the tables
        with ctx.writer.begin() as session:
            add_user(session, PHYSICIST[0], Role.PHYSICIST, PHYSICIST[1], PASSWORD, "test")
            add_user(session, PHYSICIAN[0], Role.PHYSICIAN, PHYSICIAN[1], PASSWORD, "test")
        server = LiveServer(base_url, app, review_data.console_key(ctx), None)  # type: ignore[arg-type]
        yield server, _scans(server, root)


def _scans(server: LiveServer, root: Path) -> list[int]:
    reference = qa_phantom_ct()
    write_ct_series(reference, root / "reference", patient_position=HFS, patient_id="QA")
    auth = (PHYSICIST[0], PASSWORD)
    ids = []
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        course = client.post(
            "/api/v1/courses",
            headers=server.console,
            data={"patient_id": "QA", "isocenter": "0,0,0"},
            files=review_data.upload("planning", root / "reference"),
        )
        assert course.status_code in (200, 201), course.text
        course_id = course.json()["id"]
        made = client.post(
            "/api/v1/qa/machines", json={"course_id": course_id, "machine": MACHINE}, auth=auth
        )
        assert made.status_code == 201, made.text
        for day, lateral_mm in enumerate((5.0, 7.5)):
            offset = CouchCorrection(lateral_mm, -3.0, 2.0, 0.0, 0.0, 0.0)
            motion = correction_as_planning_to_daily(offset, ORIGIN, HFS).inverse()
            daily = simulate_mvct(reference, motion, dataclasses.replace(SIM, random_seed=day))
            folder = root / f"scan-{day}"
            write_ct_series(
                daily,
                folder,
                patient_position=HFS,
                patient_id="QA",
                extra={"StationName": MACHINE},
            )
            body = review_data.post_fraction(
                client,
                server.console,
                folder,
                patient_id="QA",
                course_id=course_id,
                qa_expected_offset=ENTERED,
            )
            review_data.store_result(
                server.app.state.context, body["id"], review_data.known_result(motion, ORIGIN, HFS)
            )
            with server.app.state.context.writer() as session:
                figures = measure_phantom_image(daily, motion)
                session.add(FractionFigures(fraction_id=body["id"], phantom=figures.to_dict()))
                session.commit()
            ids.append(body["id"])
    return ids


def _point_values(page: Any, axis: str) -> list[float]:
    titles = page.locator(f"#chart-{axis} circle.point title").all_text_contents()
    return [float(t.split(": ")[1].split()[0]) for t in titles]


def test_the_qa_page_charts_the_errors_shows_the_failure_until_acknowledged_and_exports_it(
    context: Any, qa_server: tuple[LiveServer, list[int]], shots: Any
) -> None:
    server, (good_id, bad_id) = qa_server
    page = context.new_page()
    sign_in(page, server, PHYSICIST)
    banner = page.locator(f'.banner.qa-failed[data-machine="{MACHINE}"]')
    assert banner.is_visible()
    assert "lateral_mm" in banner.inner_text()

    banner.locator("a").click()
    page.wait_for_url(f"**/qa/{MACHINE}")
    shots(page, "qa-page")
    assert _point_values(page, "lateral_mm") == pytest.approx([0.0, -2.5], abs=0.01)
    assert _point_values(page, "longitudinal_mm") == pytest.approx([0.0, 0.0], abs=0.01)
    tolerance = page.locator("#chart-lateral_mm line.level title").all_text_contents()
    assert "tolerance +2.00 mm" in tolerance and "tolerance -2.00 mm" in tolerance
    assert page.locator("#chart-lateral_mm circle.flagged").count() == 1
    assert (
        page.locator(f'tr[data-fraction-id="{bad_id}"] .verdict').inner_text().startswith("failed")
    )
    assert page.locator(f'tr[data-fraction-id="{good_id}"] .verdict').inner_text() == "passed"

    with page.expect_download() as download_info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert [r["fraction_id"] for r in rows] == [str(good_id), str(bad_id)]
    assert [float(r["error_lateral_mm"]) for r in rows] == pytest.approx([0.0, -2.5], abs=0.01)
    assert [r["offset_applied_lateral_mm"] for r in rows] == ["5.00", "5.00"]
    assert date.today().strftime("%Y-%m") in download_info.value.suggested_filename

    page.fill(f"#ack-note-{bad_id}", "couch recalibrated; repeat scan passed")
    with page.expect_navigation():
        page.click(f"#ack-button-{bad_id}")
    assert page.locator(".banner.qa-failed").count() == 0
    assert "couch recalibrated" in page.locator(f'tr[data-fraction-id="{bad_id}"]').inner_text()
    page.goto(f"{server.base_url}/worklist")
    assert page.locator(".banner.qa-failed").count() == 0


@pytest.fixture(scope="module")
def weight_loss_fraction(
    qa_server: tuple[LiveServer, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> int:
    """A patient fraction whose MVCT shows an 8 mm weight loss, with a known registration result
    and the anatomy figures the core measures on it."""
    server, _ = qa_server
    samples = sf.samples(tmp_path_factory.mktemp("series"))
    planning = read_ct_series(samples.planning)
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.5, slice_spacing_mm=6.0, scan_length_mm=72.0, random_seed=5
    )
    daily = simulate_mvct(with_weight_loss(planning.image, 8.0), samples.motions[0], options)
    folder = tmp_path_factory.mktemp("weight-loss")
    write_ct_series(daily, folder, patient_position=HFS, patient_id=sf.PATIENT_ID)
    iso = samples.isocenter
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = review_data.post_fraction(
            client,
            server.console,
            folder,
            planning=samples.planning,
            patient_id=sf.PATIENT_ID,
            isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
        )
    result = review_data.known_result(samples.motions[0], iso, HFS)
    review_data.store_result(server.app.state.context, body["id"], result)
    figures = measure_anatomy(planning.image, daily, samples.motions[0], isocenter=iso)
    with server.app.state.context.writer() as session:
        session.add(FractionFigures(fraction_id=body["id"], anatomy=figures.to_dict()))
        session.commit()
    return int(body["id"])


def test_a_physician_sees_the_anatomy_flag_and_trend_and_acknowledges_it(
    context: Any, qa_server: tuple[LiveServer, list[int]], weight_loss_fraction: int, shots: Any
) -> None:
    server, _ = qa_server
    page = context.new_page()
    sign_in(page, server, PHYSICIAN)
    row = page.locator(f'tr[data-fraction-id="{weight_loss_fraction}"]')
    assert "anatomy changed: consider re-planning" in row.locator(".flag.anatomy").inner_text()
    row.locator("a.open").click()
    page.wait_for_url(f"**/review/{weight_loss_fraction}")
    assert (
        page.locator("#anatomy-flag")
        .inner_text()
        .startswith("anatomy changed: consider re-planning")
    )
    point = page.locator("#anatomy-surface-trend circle.point title").all_text_contents()
    assert len(point) == 1 and float(point[0].split(": ")[1].split()[0]) < -5.0  # inward
    shots(page, "anatomy-review")
    page.fill("#anatomy-note", "re-plan requested")
    with page.expect_navigation():
        page.click("#anatomy-ack-button")
    assert "re-plan requested" in page.locator("#anatomy-ack").inner_text()
    page.goto(f"{server.base_url}/worklist")
    assert (
        "(acknowledged)"
        in page.locator(f'tr[data-fraction-id="{weight_loss_fraction}"] .flag.anatomy').inner_text()
    )
