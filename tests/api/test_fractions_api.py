"""POST/GET /api/v1/fractions without workers: validation, idempotency, storage, atomicity.

Fractions stay ``queued`` here (no registration workers), so the POST answers 202; the tests
with real registrations are in tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select

from app.db.models import AuditEvent, Course, Fraction, ImageSeries, Job


def post(
    client: TestClient,
    headers: dict[str, str],
    mvct: Path,
    planning: Path | None = None,
    **data: str,
) -> object:
    files = sf.upload("mvct", mvct) + (sf.upload("planning", planning) if planning else [])
    return client.post(
        "/api/v1/fractions",
        headers=headers,
        data={"patient_id": sf.PATIENT_ID, **data},
        files=files,
    )


def count(client: TestClient, model: type) -> int:
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_fraction_is_stored_and_queued_with_a_location_to_poll(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    response = post(client, console, series.mvcts[0], series.planning)
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/fractions/{body['id']}"
    assert body["status"] == "queued"
    assert body["patient_id"] == sf.PATIENT_ID
    assert body["fraction_number"] == 1
    assert body["margin_mm"] == 3.0
    assert body["exceeds_margin"] is None and body["couch_correction"] is None
    assert body["review_url"] == f"http://testserver/review/{body['id']}"
    again = client.get(response.headers["location"], headers=console)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"] and again.json()["sign_off"] is None


def test_posting_the_same_mvct_twice_returns_the_same_fraction_and_stores_nothing(
    client: TestClient, console: dict[str, str], series: sf.Samples, tmp_path: Path
) -> None:
    first = post(client, console, series.mvcts[0], series.planning).json()
    data_dir = client.app.state.context.settings.data_dir  # type: ignore[attr-defined]
    files_before = sf.stored_files(data_dir)
    second = post(client, console, series.mvcts[0], series.planning)
    archive = sf.zipped(series.mvcts[0], tmp_path / "mvct")
    as_zip = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID, "course_id": str(first["course_id"])},
        files=[("mvct", ("mvct.zip", archive.read_bytes(), "application/zip"))],
    )
    assert second.json()["id"] == first["id"]
    assert as_zip.json()["id"] == first["id"], as_zip.text
    assert sf.stored_files(data_dir) == files_before
    assert count(client, Fraction) == 1 and count(client, Job) == 1
    assert count(client, ImageSeries) == 2


def test_the_same_planning_ct_is_stored_once_and_reused_by_the_next_fraction(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    first = post(client, console, series.mvcts[0], series.planning).json()
    second = post(client, console, series.mvcts[1], series.planning).json()
    by_course = post(client, console, series.mvcts[2], course_id=str(first["course_id"])).json()
    assert first["course_id"] == second["course_id"] == by_course["course_id"]
    assert [first["fraction_number"], second["fraction_number"]] == [1, 2]
    assert by_course["fraction_number"] == 3
    assert count(client, Course) == 1
    assert count(client, ImageSeries) == 4  # one planning CT, three MVCTs
    n_planning = len(list(series.planning.iterdir()))
    data_dir = client.app.state.context.settings.data_dir  # type: ignore[attr-defined]
    assert len(sf.stored_files(data_dir / "images")) == n_planning + sum(
        len(list(m.iterdir())) for m in series.mvcts[:3]
    )


def test_the_same_mvct_for_another_patient_is_a_conflict(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    post(client, console, series.mvcts[0], series.planning)
    response = post(client, console, series.mvcts[0], series.planning, patient_id="OTHER")
    assert response.status_code == 409
    assert "already stored as fraction" in response.json()["detail"]


def test_a_request_failing_half_way_leaves_no_rows_and_no_files(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app.services.fractions

    def broken_audit(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(app.services.fractions.repo, "record_audit", broken_audit)
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    response = post(client_no_raise, console, series.mvcts[0], series.planning)
    assert response.status_code == 500
    data_dir = client.app.state.context.settings.data_dir  # type: ignore[attr-defined]
    assert sf.stored_files(data_dir) == []
    assert count(client, ImageSeries) == 0 and count(client, Course) == 0
    assert count(client, Fraction) == 0 and count(client, AuditEvent) == 1  # the key's


def test_orphans_left_by_a_dead_process_are_swept_at_start(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    settings = sf.make_settings(tmp_path, database_url)
    with TestClient(sf.create_app(settings)) as client:
        headers = sf.add_api_key(client, "console-1")
        post(client, headers, series.mvcts[0], series.planning)
    kept = sf.stored_files(settings.images_dir)
    orphan = settings.images_dir / "ab" / ("ab" + "0" * 62)
    orphan.mkdir(parents=True)
    (orphan / "x.dcm").write_bytes(b"half")
    (settings.tmp_dir / "upload-dead").mkdir()
    (settings.tmp_dir / "upload-dead" / "part").write_bytes(b"half")
    with TestClient(sf.create_app(settings)):
        pass
    assert sf.stored_files(settings.data_dir) == kept


def test_an_unknown_fraction_is_404(client: TestClient, console: dict[str, str]) -> None:
    response = client.get("/api/v1/fractions/12345", headers=console)
    assert response.status_code == 404
    assert response.json() == {"detail": "fraction 12345 does not exist"}
