"""Fraction numbers are unique within a course: at the database, in the API, under concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import repository as repo
from app.db.models import Fraction


def post(
    client: TestClient, console: dict[str, str], series: sf.Samples, index: int, **data: Any
) -> Any:
    files = sf.upload("mvct", series.mvcts[index])
    if "course_id" not in data:
        files += sf.upload("planning", series.planning)
    return client.post(
        "/api/v1/fractions",
        params={"wait": "false"},
        headers=console,
        data={"patient_id": sf.PATIENT_ID, **{k: str(v) for k, v in data.items()}},
        files=files,
    )


def test_an_explicit_fraction_number_given_twice_in_a_course_is_a_409_naming_the_first(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    first = post(client, console, series, 0, fraction_number=1)
    assert first.status_code == 202, first.text
    course_id = first.json()["course_id"]
    clash = post(client, console, series, 1, course_id=course_id, fraction_number=1)
    assert clash.status_code == 409, clash.text
    assert f"fraction {first.json()['id']}" in clash.json()["detail"]
    assert "fraction number 1" in clash.json()["detail"]
    following = post(client, console, series, 1, course_id=course_id)
    assert following.status_code == 202, following.text
    assert following.json()["fraction_number"] == 2
    with client.app.state.context.sessions() as session:  # type: ignore[attr-defined]
        numbers = sorted(session.scalars(select(Fraction.fraction_number)))
    assert numbers == [1, 2]


def test_a_repeat_or_verification_image_of_a_fraction_is_declared_and_numbered_as_an_image(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    first = post(client, console, series, 0, fraction_number=3)
    course_id = first.json()["course_id"]
    repeat = post(
        client, console, series, 1, course_id=course_id, fraction_number=3, repeat_image="true"
    )
    assert repeat.status_code == 202, repeat.text
    assert (repeat.json()["fraction_number"], repeat.json()["image_number"]) == (3, 2)
    assert first.json()["image_number"] == 1
    missing = post(
        client, console, series, 2, course_id=course_id, fraction_number=9, repeat_image="true"
    )
    assert missing.status_code == 422 and "no fraction number 9" in missing.json()["detail"]
    unnumbered = post(client, console, series, 2, course_id=course_id, repeat_image="true")
    assert unnumbered.status_code == 422


def test_the_database_itself_refuses_a_second_fraction_with_the_same_number(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    first = post(client, console, series, 0)
    assert first.status_code == 202, first.text
    ctx = client.app.state.context  # type: ignore[attr-defined]
    template = _template(ctx, first.json()["id"])
    spare = _spare_series(ctx, 1)[0]
    with ctx.writer() as session:  # a new number is fine: the row itself is valid
        session.add(Fraction(**template, mvct_series_id=spare, fraction_number=7))
        session.flush()
        session.rollback()
    with pytest.raises(IntegrityError, match="fraction_number"), ctx.writer() as session:
        session.add(Fraction(**template, mvct_series_id=spare, fraction_number=1, image_number=1))
        session.flush()


def test_two_transactions_numbering_the_next_fraction_at_once_get_different_numbers(
    client: TestClient, console: dict[str, str], series: sf.Samples
) -> None:
    """The second transaction waits for the first (a row lock on the course on PostgreSQL; the
    write lock taken at BEGIN on SQLite) instead of reading the same maximum."""
    first = post(client, console, series, 0)
    assert first.status_code == 202, first.text
    course_id = first.json()["course_id"]
    ctx = client.app.state.context  # type: ignore[attr-defined]
    numbers: list[int] = []
    template = _template(ctx, first.json()["id"])

    def number_and_insert(offset: int, hold_s: float) -> None:
        with ctx.writer() as session:
            number = repo.next_fraction_number(session, course_id)
            numbers.append(number)
            session.add(Fraction(**template, mvct_series_id=offset, fraction_number=number))
            session.flush()
            time.sleep(hold_s)  # the other transaction reads meanwhile
            session.commit()

    ids = _spare_series(ctx, 2)
    other = threading.Thread(target=number_and_insert, args=(ids[1], 0.0))
    with ctx.writer() as session:
        number = repo.next_fraction_number(session, course_id)
        session.add(Fraction(**template, mvct_series_id=ids[0], fraction_number=number))
        session.flush()
        other.start()
        time.sleep(1.0)
        session.commit()
    other.join(60)
    assert sorted([number, *numbers]) == [2, 3]


def _template(ctx: Any, fraction_id: int) -> dict[str, Any]:
    with ctx.sessions() as session:
        stored = session.get(Fraction, fraction_id)
        return {
            "course_id": stored.course_id,
            "patient_id": stored.patient_id,
            "dof": 6,
            "mode": "tissue",
            "created_by": "test",
        }


def _spare_series(ctx: Any, count: int) -> list[int]:
    """Image-series rows no fraction uses yet (the MVCT column is unique)."""
    from app.db.models import ImageSeries

    ids = []
    with ctx.writer() as session:
        for index in range(count):
            row = ImageSeries(
                content_sha256=f"{index:064d}",
                series_instance_uid=f"1.2.{index}",
                patient_position="HFS",
                n_files=1,
                min_x_mm=0, min_y_mm=0, min_z_mm=0, max_x_mm=1, max_y_mm=1, max_z_mm=1,
            )  # fmt: skip
            session.add(row)
            session.flush()
            ids.append(row.id)
        session.commit()
    return ids
