"""Bad input to POST /api/v1/fractions gets a clear 4xx and leaves nothing behind.

Everything here is refused before the database is written, so SQLite is enough.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from test_fractions_api import count, post

from app.db.models import Fraction, ImageSeries


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("not_dicom", "not a DICOM file"),
        ("mr", "MR"),
        ("missing_slice", "notes"),
        ("tilted", "tilt"),
        ("unsupported_position", "HFDL"),
        ("other_patient_mvct", "SOMEONE-ELSE"),
        ("prone_mvct", "HFP"),
        ("far_mvct", "does not cover the MVCT"),
        ("mixed", "CT series"),
    ],
)
def test_unusable_images_get_a_422_that_names_the_problem_and_store_nothing(
    client: TestClient, console: dict[str, str], series: sf.Samples, case: str, words: str
) -> None:
    if case == "mixed":
        files = sf.upload("mvct", series.mvcts[0]) + sf.upload("mvct", series.mvcts[1])
    else:
        files = sf.upload("mvct", getattr(series, case))
    response = client.post(
        "/api/v1/fractions",
        headers=console,
        data={"patient_id": sf.PATIENT_ID},
        files=files + sf.upload("planning", series.planning),
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert (isinstance(detail, str) and detail.startswith("MVCT")) or "MVCT" in detail
    if case != "missing_slice":
        assert words in detail, detail
    data_dir = client.app.state.context.settings.data_dir  # type: ignore[attr-defined]
    assert sf.stored_files(data_dir) == []
    assert count(client, ImageSeries) == 0 and count(client, Fraction) == 0


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"isocenter": "1,2"}, "isocentre '1,2'"),
        ({"isocenter": "1,2,nan"}, "non-finite"),
        ({"fraction_number": "0"}, "fraction_number"),
        ({"dof": "5"}, "dof"),
        ({"mode": "lungs"}, "mode"),
        ({"course_id": "999"}, "course 999 does not exist"),
        ({"patient_id": ""}, "patient_id"),
    ],
)
def test_malformed_fields_get_a_422_with_words(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    data: dict[str, str],
    words: str,
) -> None:
    planning = None if "course_id" in data else series.planning
    response = post(client, console, series.mvcts[0], planning, **data)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_planning_and_course_are_needed_but_not_both(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    neither = post(client, console, series.mvcts[0])
    assert neither.status_code == 422
    assert "send the planning CT" in neither.json()["detail"]
    course_id = post(client, console, series.mvcts[0], series.planning).json()["course_id"]
    both = post(client, console, series.mvcts[1], series.planning, course_id=str(course_id))
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    other = post(client, console, series.mvcts[1], course_id=str(course_id), patient_id="X")
    assert other.status_code == 422 and "belongs to patient ID" in other.json()["detail"]


def test_uploads_over_the_limit_get_413(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    settings = sf.make_settings(tmp_path, database_url, max_upload_mb=0.5)
    with TestClient(sf.create_app(settings)) as client:
        headers = sf.add_api_key(client, "console-1")
        declared = post(client, headers, series.mvcts[0], series.planning)
        assert declared.status_code == 413
        assert "MVCT_GUIDE_MAX_UPLOAD_MB" in declared.json()["detail"]

        def chunks() -> object:  # no Content-Length: the limit applies while streaming
            for _ in range(100):
                yield b"x" * 65536

        streamed = client.post(
            "/api/v1/fractions",
            headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
            content=chunks(),
        )
        assert streamed.status_code == 413
        assert sf.stored_files(settings.data_dir) == []
