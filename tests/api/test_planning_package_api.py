"""The planning package in: RT Structure Set and RT Plan with the CT or later, checked, audited,
and the isocentre rule of the fractions that follow (no registration runs here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import planning_fixtures as pf
import pytest
import review_data
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent, Role
from registration.frames import PatientPosition
from registration.geometry import LpsPoint


@pytest.fixture(scope="module")
def package(series: sf.Samples, tmp_path_factory: pytest.TempPathFactory) -> pf.PlanningPackage:
    return pf.planning_package(
        series.planning, series.isocenter, tmp_path_factory.mktemp("package")
    )


def audit(client: TestClient, action: str) -> list[dict[str, Any]]:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        query = select(AuditEvent.detail).where(AuditEvent.action == action)
        return list(session.scalars(query))


def post_course(client: TestClient, headers: dict[str, str], series: sf.Samples, files: Any) -> Any:
    return client.post(
        "/api/v1/courses",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("planning", series.planning) + files,
    )


def post_fraction(
    client: TestClient,
    headers: dict[str, str],
    series: sf.Samples,
    course_id: int,
    mvct: int = 0,
    **data: str,
) -> Any:
    return client.post(
        "/api/v1/fractions",
        params={"wait": "false"},
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "course_id": str(course_id), **data},
        files=sf.upload("mvct", series.mvcts[mvct]),
    )


def test_a_course_sent_with_its_structure_set_and_plan_takes_the_plans_isocentre(
    client: TestClient, console: dict[str, str], series: sf.Samples, package: pf.PlanningPackage
) -> None:
    response = post_course(
        client,
        console,
        series,
        pf.rt_upload("rtstruct", package.rtstruct) + pf.rt_upload("rtplan", package.rtplan),
    )
    assert response.status_code == 201, response.text
    course = response.json()
    assert course["rtstruct"]["sop_instance_uid"] == package.rtstruct_sop_uid
    assert [s["name"] for s in course["rtstruct"]["structures"]] == ["BODY", "PTV", "SpinalCord"]
    assert course["rtstruct"]["structures"][1]["color"] == list(pf.PTV_COLOUR)
    iso = package.isocenter
    assert course["rtplan"]["isocenters_lps_mm"][0] == pytest.approx(
        [iso.x_mm, iso.y_mm, iso.z_mm], abs=1e-3
    )
    assert course["prv_margin_mm"] == 3.0 and "cord" in course["serial_oar_names"]
    assert {d["sop_instance_uid"] for d in audit(client, "rtstruct_attached")} == {
        package.rtstruct_sop_uid
    }
    assert len(audit(client, "rtplan_attached")) == 1
    fraction = post_fraction(client, console, series, course["id"])
    assert fraction.status_code == 202, fraction.text
    body = fraction.json()
    assert body["isocenter_source"] == "rtplan"
    assert body["isocenter_lps_mm"] == pytest.approx([iso.x_mm, iso.y_mm, iso.z_mm], abs=1e-3)
    assert body["warnings"] == []


def test_a_structure_set_drawn_on_another_frame_of_reference_is_refused_naming_both_uids(
    client: TestClient, console: dict[str, str], series: sf.Samples, package: pf.PlanningPackage
) -> None:
    response = post_course(
        client, console, series, pf.rt_upload("rtstruct", package.rtstruct_other_frame)
    )
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert package.other_frame_uid in detail and package.ct_frame_uid in detail
    assert client.get("/api/v1/courses", headers=console).json()["courses"] == []


def test_an_rt_plan_sent_in_the_structure_set_field_is_refused_in_words(
    client: TestClient, console: dict[str, str], series: sf.Samples, package: pf.PlanningPackage
) -> None:
    response = post_course(client, console, series, pf.rt_upload("rtstruct", package.rtplan))
    assert response.status_code == 422
    assert "is RT Plan, but was sent as the RT Structure Set" in response.json()["detail"]


def test_the_plan_sent_later_is_audited_and_a_request_isocentre_far_from_it_wins_with_a_warning(
    client: TestClient, series: sf.Samples, package: pf.PlanningPackage
) -> None:
    console = sf.add_api_key(client, "console-1")
    course = post_course(client, console, series, []).json()
    no_plan = post_fraction(client, console, series, course["id"]).json()
    assert no_plan["isocenter_source"] == "mvct_centre"
    assert "evaluated at the MVCT centre" in no_plan["warnings"][0]
    sf.add_person(client, "phys", Role.PHYSICIST)
    auth = ("phys", "correct horse")
    for field, path in (("rtstruct", package.rtstruct), ("rtplan", package.rtplan_off)):
        put = client.put(
            f"/api/v1/courses/{course['id']}/{field}", auth=auth, files=pf.rt_upload(field, path)
        )
        assert put.status_code == 200, put.text
    assert audit(client, "rtplan_attached")[0]["replaces"] is None
    iso = package.isocenter
    requested = post_fraction(
        client,
        console,
        series,
        course["id"],
        mvct=1,
        isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
    )
    body = requested.json()
    assert body["isocenter_source"] == "request"
    assert body["isocenter_lps_mm"] == pytest.approx([iso.x_mm, iso.y_mm, iso.z_mm])
    assert "5.0 mm from the RT Plan's" in body["warnings"][0]


def test_a_plan_with_two_isocentres_needs_the_course_to_choose_one(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    package: pf.PlanningPackage,
    tmp_path: Path,
) -> None:
    iso = package.isocenter
    second = LpsPoint(iso.x_mm, iso.y_mm, iso.z_mm + 30.0)
    plan = pf.with_two_isocenters(package.rtplan, second, tmp_path / "two.dcm")
    course = post_course(client, console, series, pf.rt_upload("rtplan", plan)).json()
    assert len(course["rtplan"]["isocenters_lps_mm"]) == 2
    refused = post_fraction(client, console, series, course["id"])
    assert refused.status_code == 422
    assert "2 isocentres" in refused.json()["detail"]
    assert f"{second.z_mm:.1f}" in refused.json()["detail"]
    sf.add_person(client, "doc", Role.PHYSICIAN)
    chosen = client.patch(
        f"/api/v1/courses/{course['id']}",
        auth=("doc", "correct horse"),
        json={"isocenter_lps_mm": [second.x_mm, second.y_mm, second.z_mm]},
    )
    assert chosen.status_code == 200
    body = post_fraction(client, console, series, course["id"], mvct=1).json()
    assert body["isocenter_source"] == "rtplan"
    assert body["isocenter_lps_mm"][2] == pytest.approx(second.z_mm, abs=1e-3)


def test_rt_objects_inside_the_planning_zip_are_found_and_attached(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    package: pf.PlanningPackage,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "package"
    folder.mkdir()
    for path in [*series.files(series.planning), package.rtstruct, package.rtplan]:
        (folder / path.name).write_bytes(path.read_bytes())
    archive = sf.zipped(folder, tmp_path / "package")
    response = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=[("planning", ("package.zip", archive.read_bytes(), "application/zip"))],
    )
    assert response.status_code == 201, response.text
    course = response.json()
    assert course["rtstruct"] is not None and course["rtplan"] is not None
    assert course["planning_content_sha256"]  # the CT itself without the RT files
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        from app.db import repository as repo

        stored = repo.all_series_hashes(session)
    assert course["rtstruct"]["content_sha256"] in stored


def test_the_signed_correction_reports_what_it_leaves_at_each_structure(
    client: TestClient, console: dict[str, str], series: sf.Samples, package: pf.PlanningPackage
) -> None:
    """A perfect 6-DOF result signed 2 mm off laterally leaves 2 mm at every structure."""
    course = post_course(
        client,
        console,
        series,
        pf.rt_upload("rtstruct", package.rtstruct) + pf.rt_upload("rtplan", package.rtplan),
    ).json()
    fraction = post_fraction(client, console, series, course["id"]).json()
    ctx = client.app.state.context  # type: ignore[attr-defined]
    data = review_data.known_result(series.motions[0], package.isocenter, PatientPosition.HFS)
    review_data.store_result(ctx, fraction["id"], data)
    assert (
        client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()[
            "signed_residuals"
        ]
        is None
    )
    sf.add_person(client, "dr-who", Role.PHYSICIAN)
    adjusted = dict(data["couch_correction"])
    adjusted["lateral_mm"] = round(adjusted["lateral_mm"] + 2.0, 2)
    signed = client.post(
        f"/api/v1/fractions/{fraction['id']}/signoff",
        json={
            "username": "dr-who",
            "password": "correct horse",
            "decision": "approved",
            "couch_correction": adjusted,
            "reason": "match the spine",
        },
    )
    assert signed.status_code == 201, signed.text
    view = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
    by_name = {r["structure"]: r for r in view["signed_residuals"]}
    assert set(by_name) == {"BODY", "PTV", "SpinalCord"}
    for residual in by_name.values():
        assert residual["max_mm"] == pytest.approx(2.0, abs=0.02)


def test_the_residual_and_match_settings_of_a_course_are_changed_with_an_audit_trail(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    course = post_course(client, console, series, []).json()
    assert course["match_structure"] is None and course["match_margin_mm"] == 15.0
    sf.add_person(client, "phys", Role.PHYSICIST)
    changes = {
        "match_structure": "PTV",
        "match_margin_mm": 20,
        "prv_margin_mm": 5,
        "serial_oar_names": ["cord", "plexus"],
    }
    patched = client.patch(
        f"/api/v1/courses/{course['id']}", auth=("phys", "correct horse"), json=changes
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["match_structure"] == "PTV" and body["match_margin_mm"] == 20.0
    assert body["prv_margin_mm"] == 5.0 and body["serial_oar_names"] == ["cord", "plexus"]
    [event] = audit(client, "course_updated")
    assert event["before"]["prv_margin_mm"] == 3.0 and event["after"]["prv_margin_mm"] == 5.0
    refused = client.patch(
        f"/api/v1/courses/{course['id']}",
        auth=("phys", "correct horse"),
        json={"serial_oar_names": ["cord,brainstem"]},
    )
    assert refused.status_code == 422
