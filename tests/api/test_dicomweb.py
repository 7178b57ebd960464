"""STOW-RS (``/dicomweb/studies``): statuses, the dicom+json answer, and what becomes of a series.

The app runs without registration workers (fractions stay queued); every test runs on SQLite and
on PostgreSQL. Instances are the generated CT series of ``service_fixtures``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import planning_fixtures as pf
import pytest
import service_fixtures as sf
from pydicom import dcmread
from service_fixtures import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import AuditEvent
from app.db.models_dicom import DicomInstance, DicomSeries
from app.main import create_app

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
REFERENCED_SOP_INSTANCE_UID = "00081155"


def files_of(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``condition`` until it returns something truthy (bounded; never a timing check)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def stow_settings(tmp_path: Path, database_url: str) -> Settings:
    return sf.make_settings(
        tmp_path, database_url, dicom_quiet_s=0.2, dicom_planning_pattern=sf.PLANNING_PATTERN
    )


@pytest.fixture
def stow(stow_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(stow_settings)) as client:
        yield client


@pytest.fixture
def key(stow: TestClient) -> dict[str, str]:
    return sf.add_api_key(stow, "console-stow")


def post(client: TestClient, headers: dict[str, str], parts: list[bytes], path: str = "") -> Any:
    body, content_type = sf.stow_multipart(parts)
    return client.post(
        f"/dicomweb/studies{path}", content=body, headers={**headers, **content_type}
    )


def count(client: TestClient, model: Any) -> int:
    with client.app.state.context.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_ct_series_sent_by_stow_rs_is_stored_and_every_instance_is_referenced(
    stow: TestClient, key: dict[str, str], series: sf.Samples
) -> None:
    parts = files_of(series.mvcts[0])
    response = post(stow, key, parts)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    body = response.json()
    referenced = body[REFERENCED_SOP_SEQUENCE]["Value"]
    sent = {str(dcmread(p).SOPInstanceUID) for p in sorted(series.mvcts[0].iterdir())}
    assert {item[REFERENCED_SOP_INSTANCE_UID]["Value"][0] for item in referenced} == sent
    assert FAILED_SOP_SEQUENCE not in body
    assert count(stow, DicomInstance) == len(parts)


def test_a_planning_ct_and_an_mvct_sent_by_stow_rs_become_a_course_and_a_queued_fraction(
    stow: TestClient, key: dict[str, str], series: sf.Samples
) -> None:
    assert post(stow, key, files_of(series.planning)).status_code == 200
    assert post(stow, key, files_of(series.mvcts[1])).status_code == 200

    def series_states() -> list[tuple[str, str]]:
        with stow.app.state.context.sessions() as session:
            rows = session.scalars(select(DicomSeries).order_by(DicomSeries.id)).all()
            return [(r.kind, r.state) for r in rows]

    done = [("planning", "done"), ("mvct", "done")]
    assert wait_for(lambda: series_states() == done), series_states()
    log = stow.get(f"/api/v1/patients/{sf.PATIENT_ID}/fractions", headers=key).json()
    assert [f["status"] for f in log["fractions"]] == ["queued"]
    fraction = stow.get(f"/api/v1/fractions/{log['fractions'][0]['fraction_id']}", headers=key)
    mvct_uid = str(dcmread(sorted(series.mvcts[1].iterdir())[0]).SeriesInstanceUID)
    assert fraction.json()["mvct_series_instance_uid"] == mvct_uid
    with stow.app.state.context.sessions() as session:
        mvct_row = session.scalars(select(DicomSeries).where(DicomSeries.kind == "mvct")).one()
        assert mvct_row.fraction_id == fraction.json()["id"]


def test_an_mvct_that_arrives_before_its_planning_ct_waits_and_is_used_when_it_comes(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    # the senders are named (the AE rule; for STOW-RS the sender is the API key's name)
    settings = sf.make_settings(
        tmp_path,
        database_url,
        dicom_quiet_s=0.2,
        dicom_mvct_aes="console-stow",
        dicom_planning_aes="planning-system",
    )
    with TestClient(create_app(settings)) as client:
        key = sf.add_api_key(client, "console-stow")
        assert post(client, key, files_of(series.mvcts[2])).status_code == 200

        def state_of_mvct() -> str:
            with client.app.state.context.sessions() as session:
                row = session.scalars(select(DicomSeries)).first()
                return "" if row is None else row.state

        assert wait_for(lambda: state_of_mvct() == "waiting")
        planning_key = sf.add_api_key(client, "planning-system")
        assert post(client, planning_key, files_of(series.planning)).status_code == 200
        assert wait_for(lambda: state_of_mvct() == "done")


def test_instances_of_another_study_than_the_url_names_are_refused_with_409(
    stow: TestClient, key: dict[str, str], series: sf.Samples
) -> None:
    parts = files_of(series.mvcts[0])[:3]
    response = post(stow, key, parts, path="/1.2.3.4")
    assert response.status_code == 409
    failed = response.json()[FAILED_SOP_SEQUENCE]["Value"]
    assert [item[FAILURE_REASON]["Value"][0] for item in failed] == [0xA900] * 3
    assert count(stow, DicomInstance) == 0


def test_a_request_mixing_ct_with_mr_and_a_broken_part_stores_the_ct_and_answers_202(
    stow: TestClient, key: dict[str, str], series: sf.Samples
) -> None:
    ct = files_of(series.mvcts[0])[:2]
    mr = files_of(series.mr)[:1]
    broken = [b"\0" * 128 + b"DICM" + b"this is not a data set"]
    response = post(stow, key, ct + mr + broken)
    assert response.status_code == 202
    body = response.json()
    assert len(body[REFERENCED_SOP_SEQUENCE]["Value"]) == 2
    reasons = sorted(
        item[FAILURE_REASON]["Value"][0] for item in body[FAILED_SOP_SEQUENCE]["Value"]
    )
    assert reasons == [0xA900, 0xC000]
    assert count(stow, DicomInstance) == 2


def test_an_instance_sent_again_is_answered_stored_and_the_first_copy_is_kept(
    stow: TestClient, key: dict[str, str], series: sf.Samples
) -> None:
    first = files_of(series.mvcts[0])[0]
    assert post(stow, key, [first]).status_code == 200
    assert post(stow, key, [first]).status_code == 200
    changed = dcmread(sorted(series.mvcts[0].iterdir())[0])
    changed.SeriesDescription = "changed on the way"
    path = Path(stow.app.state.context.settings.data_dir) / "changed.dcm"
    changed.save_as(path)
    response = post(stow, key, [path.read_bytes()])
    assert response.status_code == 202
    assert response.json()[REFERENCED_SOP_SEQUENCE]["Value"][0][WARNING_REASON]["Value"] == [0xB101]
    with stow.app.state.context.sessions() as session:
        kept = session.scalars(select(DicomInstance)).one()
    stored = dcmread(stow.app.state.dicom.inbox.path_for(kept.file_sha256))
    assert stored.SeriesDescription == sf.MVCT_DESCRIPTION


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/dicom", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
def test_a_body_that_is_not_multipart_related_dicom_is_refused_with_a_reason(
    stow: TestClient, key: dict[str, str], content_type: str, status: int
) -> None:
    response = stow.post(
        "/dicomweb/studies", content=b"whatever", headers={**key, "Content-Type": content_type}
    )
    assert response.status_code == status
    assert response.json()["detail"]


def test_a_multipart_body_with_no_complete_part_is_refused_with_400(
    stow: TestClient, key: dict[str, str]
) -> None:
    body, content_type = sf.stow_multipart([b"\0" * 132])
    response = stow.post("/dicomweb/studies", content=body[:-10], headers={**key, **content_type})
    assert response.status_code == 400
    assert "no complete part" in response.json()["detail"]


def test_stow_rs_without_the_console_api_key_is_refused(
    stow: TestClient, series: sf.Samples
) -> None:
    assert post(stow, {}, files_of(series.mvcts[0])[:1]).status_code == 401
    assert count(stow, DicomInstance) == 0


def test_an_rt_structure_set_and_plan_sent_before_their_ct_are_attached_by_frame_of_reference(
    stow: TestClient,
    key: dict[str, str],
    series: sf.Samples,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    package = pf.planning_package(
        series.planning, series.isocenter, tmp_path_factory.mktemp("package")
    )
    rt_parts = [package.rtstruct.read_bytes(), package.rtplan.read_bytes()]
    assert post(stow, key, rt_parts).status_code == 200
    assert post(stow, key, files_of(series.planning)).status_code == 200

    def attached() -> dict[str, Any] | None:
        courses = stow.get("/api/v1/courses", headers=key).json()["courses"]
        done = courses and courses[0]["rtstruct"] and courses[0]["rtplan"]
        return courses[0] if done else None

    course = wait_for(attached)
    assert course, stow.get("/api/v1/courses", headers=key).json()
    assert course["rtstruct"]["sop_instance_uid"] == package.rtstruct_sop_uid
    with stow.app.state.context.sessions() as session:
        actors = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "rtstruct_attached")
        ).all()
    assert actors == ["stow-rs:console-stow"]
