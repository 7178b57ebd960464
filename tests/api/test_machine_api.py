"""Machine profiles over HTTP: stored and audited, matched to fractions, applied to their result.

Results are written directly (tests/e2e/review_data.py), so no engine runs here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import review_data
import service_fixtures as sf
from pydicom import dcmread
from service_fixtures import TestClient
from sqlalchemy import select

from app.db.models import AuditEvent, Role
from registration.couch import Dof
from registration.frames import PatientPosition
from registration.machine import THREE_DOF_COUCH, TOMOTHERAPY_HI_ART

HI_ART = quote(TOMOTHERAPY_HI_ART.name)


@pytest.fixture
def physicist(client: TestClient) -> dict[str, str]:
    return sf.add_api_key(client, "physicist-1", Role.PHYSICIST)


def with_station_name(folder: Path, target: Path, station_name: str) -> Path:
    target.mkdir()
    for path in sorted(folder.iterdir()):
        dataset = dcmread(path)
        dataset.StationName = station_name
        dataset.save_as(target / path.name)
    return target


def post(client: TestClient, headers: dict[str, str], mvct: Path, **data: Any) -> dict[str, Any]:
    return review_data.post_fraction(client, headers, mvct, patient_id=sf.PATIENT_ID, **data)


def iso_text(series: sf.Samples) -> str:
    iso = series.isocenter
    return f"{iso.x_mm},{iso.y_mm},{iso.z_mm}"


def test_the_shipped_profiles_are_listed_and_a_physicists_change_is_audited(
    client: TestClient, physicist: dict[str, str], console: dict[str, str]
) -> None:
    listed = client.get("/api/v1/machine-profiles", headers=console).json()["profiles"]
    assert {p["name"]: p["dof"] for p in listed} == {
        "TomoTherapy Hi·Art": 4,
        "Radixact": 4,
        "6-DOF couch": 6,
        "3-DOF couch": 3,
    }
    changed = TOMOTHERAPY_HI_ART.to_dict()
    changed["axes"]["roll"]["limit_deg"] = 3.0
    changed["machine_names"] = ["HIART-2"]
    refused = client.put(f"/api/v1/machine-profiles/{HI_ART}", headers=console, json=changed)
    assert refused.status_code == 403
    answer = client.put(f"/api/v1/machine-profiles/{HI_ART}", headers=physicist, json=changed)
    assert answer.status_code == 200, answer.text
    shown = client.get(f"/api/v1/machine-profiles/{HI_ART}", headers=console).json()
    assert shown["profile"]["axes"]["roll"]["limit_deg"] == 3.0
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "machine_profile_set")
        ).all()
    assert len(events) == 1
    assert events[0].detail["before"]["axes"]["roll"]["limit_deg"] == 5.0
    assert events[0].detail["after"]["machine_names"] == ["HIART-2"]
    created = client.put(
        "/api/v1/machine-profiles/Room%204", headers=physicist, json=changed | {"name": "Room 4"}
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"axes": {"pitch": {"actuator": "gantry_start_angle"}}}, "pitch cannot be applied"),
        ({"axes": {"lateral": {"actuator": "couch_translation", "limit_mm": -1}}}, "positive"),
        ({"name": "another name"}, "differs from the address"),
    ],
)
def test_an_impossible_profile_is_refused_with_words(
    client: TestClient, physicist: dict[str, str], change: dict[str, Any], words: str
) -> None:
    profile = TOMOTHERAPY_HI_ART.to_dict()
    for key, value in change.items():
        if key == "axes":
            profile["axes"] = profile["axes"] | value
        else:
            profile[key] = value
    answer = client.put(f"/api/v1/machine-profiles/{HI_ART}", headers=physicist, json=profile)
    assert answer.status_code == 422
    assert words in answer.json()["detail"]


def test_the_mvct_station_name_chooses_the_profile_and_its_dof_unless_the_request_gives_one(
    client: TestClient, console: dict[str, str], series: sf.Samples, tmp_path: Path
) -> None:
    hi_art = with_station_name(series.mvcts[0], tmp_path / "hi-art", "hi-art ")
    first = post(client, console, hi_art, planning=series.planning, isocenter=iso_text(series))
    assert (first["station_name"], first["dof"]) == ("hi-art", 4)
    other = with_station_name(series.mvcts[1], tmp_path / "other", "Room 9")
    second = post(client, console, other, course_id=str(first["course_id"]))
    assert (second["station_name"], second["dof"]) == ("Room 9", 6)  # no match: the course's
    override = with_station_name(series.mvcts[2], tmp_path / "override", "Hi-Art")
    third = post(client, console, override, course_id=str(first["course_id"]), dof="3")
    assert third["dof"] == 3


def test_a_course_profile_and_bore_axis_give_the_tomotherapy_roll_about_the_axis(
    client: TestClient,
    console: dict[str, str],
    physicist: dict[str, str],
    series: sf.Samples,
) -> None:
    first = post(
        client, console, series.mvcts[0], planning=series.planning, isocenter=iso_text(series)
    )
    course = f"/api/v1/courses/{first['course_id']}"
    unknown = client.patch(course, headers=physicist, json={"machine_profile": "Hi-Art 9"})
    assert unknown.status_code == 404
    assert "TomoTherapy Hi·Art" in unknown.json()["detail"]
    set_profile = client.patch(
        course, headers=physicist, json={"machine_profile": TOMOTHERAPY_HI_ART.name}
    )
    assert set_profile.json()["machine_profile"] == TOMOTHERAPY_HI_ART.name
    fraction = post(client, console, series.mvcts[1], course_id=str(first["course_id"]))
    assert fraction["dof"] == 4
    ctx = client.app.state.context  # type: ignore[attr-defined]
    data = review_data.known_result(
        series.motions[1], series.isocenter, PatientPosition.HFS, Dof.TRANSLATIONS_ROLL
    )
    review_data.store_result(ctx, fraction["id"], data)
    url = f"/api/v1/fractions/{fraction['id']}"
    held = client.get(url, headers=console).json()
    machine = held["machine_correction"]
    assert machine["profile_name"] == TOMOTHERAPY_HI_ART.name
    assert "rotation_axis_unknown" in machine["flags"]
    assert machine["measured"] == held["couch_correction_6dof"]
    roll_deg = machine["proposed"]["roll_deg"]
    assert abs(roll_deg) > 0.3  # series.motions[1] rolls 0.5° about the long axis
    assert machine["proposed"]["pitch_deg"] == machine["proposed"]["yaw_deg"] == 0.0
    # the bore axis 100 mm to the patient's right of the isocentre (LPS −x), at its height;
    # the point's longitudinal place (LPS z) does not matter
    iso = series.isocenter
    axis = [iso.x_mm - 100.0, iso.y_mm, iso.z_mm + 70.0]
    client.patch(course, headers=physicist, json={"rotation_axis_lps_mm": axis})
    known = client.get(url, headers=console).json()["machine_correction"]
    assert "rotation_axis_unknown" not in known["flags"]
    assert known["isocenter_offset_from_axis_mm"] == pytest.approx([100.0, -70.0, 0.0], abs=1e-3)
    roll_rad = math.radians(known["proposed"]["roll_deg"])
    about_iso = held["machine_correction"]["proposed"]
    # t_m = t − (I − R_yᵀ)·(100, 0, 0): lateral −100(1 − cos r), vertical +100 sin r
    assert known["proposed"]["vertical_mm"] - about_iso["vertical_mm"] == pytest.approx(
        100.0 * math.sin(roll_rad), abs=0.02
    )
    assert known["proposed"]["lateral_mm"] - about_iso["lateral_mm"] == pytest.approx(
        -100.0 * (1.0 - math.cos(roll_rad)), abs=0.02
    )


def test_a_correction_beyond_a_limit_is_flagged_and_kept(
    client: TestClient, console: dict[str, str], physicist: dict[str, str], series: sf.Samples
) -> None:
    tight = THREE_DOF_COUCH.to_dict() | {"name": "Tight couch", "machine_names": ["TIGHT"]}
    tight["axes"]["vertical"] = tight["axes"]["vertical"] | {"limit_mm": 1.0}
    assert client.put("/api/v1/machine-profiles/Tight%20couch", headers=physicist, json=tight)
    first = post(
        client, console, series.mvcts[0], planning=series.planning, isocenter=iso_text(series)
    )
    course = f"/api/v1/courses/{first['course_id']}"
    client.patch(course, headers=physicist, json={"machine_profile": "Tight couch"})
    fraction = post(client, console, series.mvcts[3], course_id=str(first["course_id"]))
    data = review_data.known_result(
        series.motions[3], series.isocenter, PatientPosition.HFS, Dof.TRANSLATIONS
    )
    review_data.store_result(client.app.state.context, fraction["id"], data)  # type: ignore[attr-defined]
    machine = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()[
        "machine_correction"
    ]
    assert machine["beyond_limit"] == ["vertical"]
    assert "beyond_limit" in machine["flags"]
    assert abs(machine["to_apply"]["vertical_mm"]) > 1.0  # shown, not clipped
    assert any("not clipped" in m for m in machine["messages"])


def test_a_bore_axis_roll_with_the_axis_unknown_is_held_until_a_reason_or_the_axis_is_given(
    client: TestClient, console: dict[str, str], physicist: dict[str, str], series: sf.Samples
) -> None:
    sf.add_person(client, "dr-m", Role.PHYSICIAN, "a long password")
    first = post(
        client, console, series.mvcts[0], planning=series.planning, isocenter=iso_text(series)
    )
    course = f"/api/v1/courses/{first['course_id']}"
    client.patch(course, headers=physicist, json={"machine_profile": TOMOTHERAPY_HI_ART.name})
    fraction = post(client, console, series.mvcts[2], course_id=str(first["course_id"]))
    data = review_data.known_result(
        series.motions[2], series.isocenter, PatientPosition.HFS, Dof.TRANSLATIONS_ROLL
    )
    review_data.store_result(client.app.state.context, fraction["id"], data)  # type: ignore[attr-defined]
    sign = {"username": "dr-m", "password": "a long password", "decision": "approved"}
    url = f"/api/v1/fractions/{fraction['id']}/signoff"
    held = client.post(url, json=sign)
    assert held.status_code == 422
    assert "bore axis" in held.json()["detail"]
    iso = series.isocenter
    axis = [iso.x_mm - 100.0, iso.y_mm, iso.z_mm]  # 100 mm to the patient's right
    client.patch(course, headers=physicist, json={"rotation_axis_lps_mm": axis})
    nudged = dict(data["couch_correction"]) | {
        "lateral_mm": data["couch_correction"]["lateral_mm"] + 1.0
    }
    answer = client.post(url, json=sign | {"couch_correction": nudged, "reason": "nudge"})
    assert answer.status_code == 201, answer.text
    shown = client.get(f"/api/v1/fractions/{fraction['id']}", headers=console).json()
    assert shown["signoff"]["decision"] == "approved_adjusted"
    applied = shown["machine_correction_signed"]["to_apply"]
    roll_rad = math.radians(applied["roll_deg"])
    assert applied["roll_deg"] == pytest.approx(nudged["roll_deg"], abs=0.011)
    # the signed values, about the isocentre, plus the bore-axis term of the roll
    assert applied["vertical_mm"] == pytest.approx(
        nudged["vertical_mm"] + 100.0 * math.sin(roll_rad), abs=0.02
    )
    assert applied["lateral_mm"] == pytest.approx(
        nudged["lateral_mm"] - 100.0 * (1.0 - math.cos(roll_rad)), abs=0.02
    )
