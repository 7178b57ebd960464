"""Courses (POST/GET/PATCH /api/v1/courses) and the shift log of a patient."""

from __future__ import annotations

import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent, Role


def create(client: TestClient, auth: object, series: sf.Samples, **data: str) -> object:
    return client.post(
        "/api/v1/courses",
        auth=auth,  # type: ignore[arg-type]
        data={"patient_id": sf.PATIENT_ID, **data},
        files=sf.upload("planning", series.planning),
    )


def test_a_physicist_creates_a_course_once_and_gets_it_back(
    client: TestClient, series: sf.Samples
) -> None:
    sf.add_person(client, "phys", Role.PHYSICIST)
    auth = ("phys", "correct horse")
    iso = series.isocenter
    fields = {
        "isocenter": f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
        "ptv_margin_mm": "5",
        "dof": "4",
        "mode": "bone",
        "site": "thorax",
    }
    first = create(client, auth, series, **fields)
    assert first.status_code == 201, first.text
    course = first.json()
    assert course["ptv_margin_mm"] == 5.0 and course["dof"] == 4 and course["mode"] == "bone"
    assert course["patient_position"] == "HFS"
    assert course["isocenter_lps_mm"] == [iso.x_mm, iso.y_mm, iso.z_mm]
    assert course["created_by"] == "user:phys"
    again = create(client, auth, series, **fields)
    assert again.status_code == 200 and again.json()["id"] == course["id"]
    clash = create(client, auth, series, **{**fields, "ptv_margin_mm": "3"})
    assert clash.status_code == 409
    assert f"course {course['id']}" in clash.json()["detail"]
    listed = client.get("/api/v1/courses", auth=auth, params={"patient_id": sf.PATIENT_ID})
    assert [c["id"] for c in listed.json()["courses"]] == [course["id"]]
    assert client.get("/api/v1/courses", auth=auth, params={"patient_id": "X"}).json() == {
        "courses": []
    }
    assert client.get(f"/api/v1/courses/{course['id']}", auth=auth).json() == course
    assert client.get("/api/v1/courses/999", auth=auth).status_code == 404


def test_a_course_position_that_contradicts_the_planning_ct_is_refused(
    client: TestClient, series: sf.Samples
) -> None:
    headers = sf.add_api_key(client, "console-1")
    response = client.post(
        "/api/v1/courses",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, "patient_position": "FFS"},
        files=sf.upload("planning", series.planning),
    )
    assert response.status_code == 422
    assert "FFS" in response.json()["detail"] and "HFS" in response.json()["detail"]


def test_fractions_of_a_course_use_its_margin_and_the_change_is_audited(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    course = client.post(
        "/api/v1/courses",
        headers=console,
        data={"patient_id": sf.PATIENT_ID, "dof": "3"},
        files=sf.upload("planning", series.planning),
    ).json()
    sf.add_person(client, "doc", Role.PHYSICIAN)
    patched = client.patch(
        f"/api/v1/courses/{course['id']}",
        auth=("doc", "correct horse"),
        json={"ptv_margin_mm": 4.5, "site": "lung"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["ptv_margin_mm"] == 4.5 and patched.json()["dof"] == 3
    bad = client.patch(
        f"/api/v1/courses/{course['id']}", auth=("doc", "correct horse"), json={"dof": 5}
    )
    assert bad.status_code == 422
    fraction = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID, "course_id": str(course["id"])},
        files=sf.upload("mvct", series.mvcts[0]),
    ).json()
    assert fraction["margin_mm"] == 4.5 and fraction["dof"] == 3
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "course_updated")
        ).all()
    assert len(events) == 1
    assert events[0].actor == "user:doc"
    assert events[0].detail["before"]["ptv_margin_mm"] == 3.0
    assert events[0].detail["after"]["ptv_margin_mm"] == 4.5


def test_the_shift_log_lists_a_patients_fractions_oldest_first(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    empty = client.get("/api/v1/patients/NOBODY/fractions", headers=console)
    assert empty.status_code == 200 and empty.json() == {"patient_id": "NOBODY", "fractions": []}
    ids = []
    for mvct in series.mvcts[:3]:
        response = client.post(
            "/api/v1/fractions",
            headers=console,
            data={"patient_id": sf.PATIENT_ID},
            files=sf.upload("mvct", mvct) + sf.upload("planning", series.planning),
        )
        ids.append(response.json()["id"])
    log = client.get(f"/api/v1/patients/{sf.PATIENT_ID}/fractions", headers=console).json()
    assert [f["id"] for f in log["fractions"]] == ids  # "id", as every other resource answers
    assert [f["fraction_id"] for f in log["fractions"]] == ids  # kept for older clients
    assert [f["fraction_number"] for f in log["fractions"]] == [1, 2, 3]
    assert all(f["status"] == "queued" and f["couch_correction"] is None for f in log["fractions"])
