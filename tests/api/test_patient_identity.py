"""The wrong-patient check (issue 11, item 7): a blank Patient ID is refused, and the MVCT and
the planning CT must agree on Patient ID and — when both carry them — Patient's Name and Birth
Date (a mismatch is 409 naming both values). Before, a blank PatientID skipped the check and only
the ID was compared. The series are the generated ones of ``service_fixtures``, rewritten with
pydicom. Refused before the database is written, so SQLite is enough.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import service_fixtures as sf
from pydicom import dcmread
from service_fixtures import TestClient
from test_fractions_api import count, post

from app.db.models import Fraction

JANE = {"PatientName": "Doe^Jane", "PatientBirthDate": "19600101"}


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def rewritten(source: Path, target: Path, **elements: str) -> Path:
    """A copy of the series in ``source`` with ``elements`` set in every file."""
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        dataset = dcmread(path)
        for keyword, value in elements.items():
            setattr(dataset, keyword, value)
        dataset.save_as(target / path.name)
    return target


@pytest.fixture
def jane_planning(series: sf.Samples, tmp_path: Path) -> Path:
    return rewritten(series.planning, tmp_path / "planning-jane", **JANE)


def test_an_mvct_without_a_patient_id_is_refused(
    client: TestClient, console: dict[str, str], series: sf.Samples, tmp_path: Path
) -> None:
    blank = rewritten(series.mvcts[0], tmp_path / "blank", PatientID="")
    response = post(client, console, blank, series.planning)
    assert response.status_code == 422, response.text
    assert "no Patient ID" in response.json()["detail"]
    assert count(client, Fraction) == 0


@pytest.mark.parametrize(
    ("mvct_elements", "named"),
    [
        ({"PatientName": "Doe^John", "PatientBirthDate": "19600101"}, ("Doe^Jane", "Doe^John")),
        ({"PatientName": "Doe^Jane", "PatientBirthDate": "19650707"}, ("19600101", "19650707")),
    ],
)
def test_an_mvct_whose_name_or_birth_date_differs_from_the_planning_ct_is_a_409_naming_both(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    jane_planning: Path,
    tmp_path: Path,
    mvct_elements: dict[str, str],
    named: tuple[str, str],
) -> None:
    mvct = rewritten(series.mvcts[0], tmp_path / "mvct", **mvct_elements)
    response = post(client, console, mvct, jane_planning)
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert named[0] in detail and named[1] in detail
    assert count(client, Fraction) == 0


def test_the_stored_planning_ct_of_a_course_is_compared_as_well(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    jane_planning: Path,
    tmp_path: Path,
) -> None:
    first = post(client, console, rewritten(series.mvcts[0], tmp_path / "a", **JANE), jane_planning)
    assert first.status_code == 202, first.text
    course_id = str(first.json()["course_id"])
    john = rewritten(series.mvcts[1], tmp_path / "b", PatientName="Doe^John")
    response = post(client, console, john, course_id=course_id)
    assert response.status_code == 409, response.text
    assert "Doe^Jane" in response.json()["detail"] and "Doe^John" in response.json()["detail"]


def test_names_differing_only_in_case_or_empty_components_match_and_a_missing_name_is_not_compared(
    client: TestClient,
    console: dict[str, str],
    series: sf.Samples,
    jane_planning: Path,
    tmp_path: Path,
) -> None:
    same = rewritten(series.mvcts[0], tmp_path / "same", PatientName="DOE^JANE^^^")
    assert post(client, console, same, jane_planning).status_code == 202
    unnamed = rewritten(series.mvcts[1], tmp_path / "unnamed", PatientName="")
    assert post(client, console, unnamed, jane_planning).status_code == 202


def test_the_module_examples_run() -> None:
    import doctest

    import app.services.patient_identity

    assert doctest.testmod(app.services.patient_identity).failed == 0
