"""Residuals through the real workers: a registered fraction reports what is left at each
structure after the couch's correction, and an uncorrected pitch on a 4-DOF course warns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import planning_fixtures as pf
import pytest
import service_fixtures as sf
import SimpleITK as sitk
from service_fixtures import TestClient

from app.db.models import Role
from app.jobs.pool import WorkerPool
from registration.couch import couch_correction_6dof
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.frames import PatientPosition, rot_x
from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct

PITCH_DEG = 6.0


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str, warm_pool: WorkerPool) -> Iterator[TestClient]:
    settings = sf.make_settings(tmp_path, sqlite_url, start_workers=True)
    with TestClient(sf.create_app(settings, pool=warm_pool)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def package(series: sf.Samples, tmp_path_factory: pytest.TempPathFactory) -> pf.PlanningPackage:
    return pf.planning_package(
        series.planning, series.isocenter, tmp_path_factory.mktemp("package")
    )


@pytest.fixture(scope="module")
def pitched_mvct(series: sf.Samples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MVCT of the planning CT pitched by 6° about the lateral axis through the isocentre."""
    planning = read_ct_series(series.planning)
    motion = rigid_about(series.isocenter, rot_x(PITCH_DEG), (1.0, -2.0, 1.5))
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.5, slice_spacing_mm=6.0, scan_length_mm=72.0, noise_hu=30.0
    )
    daily = simulate_mvct(sitk.Cast(planning.image, sitk.sitkFloat32), motion, options)
    folder = tmp_path_factory.mktemp("pitched")
    write_ct_series(
        daily, folder, patient_position=planning.patient_position, patient_id=sf.PATIENT_ID
    )
    return folder


def new_course(client: TestClient, console: dict[str, str], series: sf.Samples) -> int:
    package = pf._package
    assert package is not None
    response = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("planning", series.planning)
        + pf.rt_upload("rtstruct", package.rtstruct)
        + pf.rt_upload("rtplan", package.rtplan),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def register(
    client: TestClient, console: dict[str, str], course_id: int, mvct: Path, dof: int
) -> Any:
    response = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID, "course_id": str(course_id), "dof": str(dof)},
        files=sf.upload("mvct", mvct),
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.slow
def test_a_six_dof_correction_leaves_nothing_and_an_uncorrected_pitch_on_four_dof_warns(
    client: TestClient, series: sf.Samples, package: pf.PlanningPackage, pitched_mvct: Path
) -> None:
    console = sf.add_api_key(client, "console-1")
    course_id = new_course(client, console, series)
    six = register(client, console, course_id, series.mvcts[0], 6)
    assert six["isocenter_source"] == "rtplan"
    by_name = {r["structure"]: r for r in six["residuals"]}
    assert set(by_name) == {"BODY", "PTV", "SpinalCord"}
    assert by_name["PTV"]["type"] == "PTV"
    assert all(r["max_mm"] < 0.1 for r in six["residuals"]), six["residuals"]
    assert six["trusted"] is True
    cache = Path(client.app.state.context.settings.data_dir) / "planning-cache"  # type: ignore[attr-defined]
    assert len(list(cache.glob("*/*.npz"))) == 1  # rasterised once, beside the planning CT

    four = register(client, console, course_id, pitched_mvct, 4)
    ptv = next(r for r in four["residuals"] if r["structure"] == "PTV")
    # a point at ρ mm from the pitch axis moves 2ρ·sin(θ/2); the PTV edge is at ρ ≤ 20 mm
    assert 1.5 <= ptv["max_mm"] <= 2 * pf.PTV_RADIUS_MM * 0.06
    assert ptv["p95_mm"] <= ptv["max_mm"]
    assert four["trusted"] is False
    assert any("uncorrected pitch" in w and "PTV edge" in w for w in four["warnings"]), four


@pytest.mark.slow
def test_a_course_matching_on_its_ptv_registers_and_an_unknown_structure_is_refused_in_words(
    client: TestClient, series: sf.Samples, package: pf.PlanningPackage
) -> None:
    console = sf.add_api_key(client, "console-1")
    course_id = new_course(client, console, series)
    sf.add_person(client, "phys", Role.PHYSICIST)
    auth = ("phys", "correct horse")
    patched = client.patch(
        f"/api/v1/courses/{course_id}", auth=auth, json={"match_structure": "PTV"}
    )
    assert patched.status_code == 200, patched.text
    matched = register(client, console, course_id, series.mvcts[1], 6)
    expected = couch_correction_6dof(series.motions[1], series.isocenter, PatientPosition.HFS)
    for axis in ("lateral_mm", "longitudinal_mm", "vertical_mm"):
        assert matched["couch_correction"][axis] == pytest.approx(
            getattr(expected, axis), abs=1.0
        ), axis
    client.patch(f"/api/v1/courses/{course_id}", auth=auth, json={"match_structure": "Liver"})
    refused = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID, "course_id": str(course_id)},
        files=sf.upload("mvct", series.mvcts[2]),
    )
    assert refused.status_code == 422, refused.text
    assert "Liver" in refused.json()["detail"]


@pytest.mark.slow
def test_a_fraction_registered_at_the_mvct_centre_is_never_trusted_and_says_why(
    client: TestClient, series: sf.Samples
) -> None:
    console = sf.add_api_key(client, "console-1")
    response = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("mvct", series.mvcts[3]) + sf.upload("planning", series.planning),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["isocenter_source"] == "mvct_centre"
    assert body["trusted"] is False
    assert any("evaluated at the MVCT centre" in w for w in body["warnings"]), body["warnings"]
    assert [r["type"] for r in body["residuals"]] == ["ISOCENTRE_SPHERE"]
