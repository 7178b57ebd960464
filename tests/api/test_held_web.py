"""The physicists' page of held DICOM series without a browser: roles, CSRF, each decision, the
409 of a decision someone took first, the count on the worklist.

Series arrive by STOW-RS with no MVCT description rule, so every series is held (as in
test_dicom_unassigned); the page decides through the same service functions as the API. SQLite.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient, create_app
from sqlalchemy import func, select
from test_dicom_unassigned import create_course, series_rows, unassigned
from test_dicomweb import files_of, post, wait_for
from test_signoff_web import PASSWORD, csrf_of, sign_in

from app.db.models import AuditEvent, Fraction, Role

PHYSICIST = "mcurie"  # the API tests' physicist: the same password
OTHER_PHYSICIST = "lmeitner"


@pytest.fixture
def web(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    settings = sf.make_settings(tmp_path, sqlite_url, dicom_quiet_s=0.2, dicom_mvct_pattern="")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        for username, role in (
            (PHYSICIST, Role.PHYSICIST),
            (OTHER_PHYSICIST, Role.PHYSICIST),
            ("dr-who", Role.PHYSICIAN),
            ("terry", Role.THERAPIST),
        ):
            sf.add_person(client, username, role, PASSWORD)
        yield client


@pytest.fixture
def archive(web: TestClient) -> dict[str, str]:
    return sf.add_api_key(web, "archive")


def hold(client: TestClient, key: dict[str, str], folder: Path) -> int:
    """Send ``folder`` by STOW-RS; the id of its series once the grouper has held it."""
    before = {s.id for s in series_rows(client)}
    assert post(client, key, files_of(folder)).status_code == 200
    row = wait_for(
        lambda: next(
            (s for s in series_rows(client) if s.id not in before and s.state != "pending"), None
        )
    )
    assert row is not None and row.state == "ignored", row and (row.state, row.error)
    return int(row.id)


def held_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="series[^"]*" id="held-(\d+)"', html)]


def fractions(client: TestClient) -> int:
    with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(Fraction)) or 0)


def decide(client: TestClient, series_id: int, action: str, **form: str) -> Any:
    token = csrf_of(client.get("/dicom/held").text)
    return client.post(f"/dicom/held/{series_id}/{action}", data={"csrf_token": token, **form})


def test_a_physicist_sees_the_held_series_newest_first_with_what_each_decision_needs(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    course_id = create_course(web, sf.add_api_key(web, "console-1"), series.planning)
    first = hold(web, archive, series.mvcts[0])
    second = hold(web, archive, series.mvcts[1])
    sign_in(web, PHYSICIST)

    page = web.get("/dicom/held")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "style=" not in page.text  # the strict CSP
    assert held_ids(page.text) == [second, first]
    row = page.text[page.text.index(f'id="held-{second}"') :]
    row = row[: row.index('<tr class="series') if '<tr class="series' in row else None]
    for shown in (sf.PATIENT_ID, "<td>CT</td>", sf.MVCT_DESCRIPTION, "no rule", "archive"):
        assert shown in row, shown
    uid = next(s.series_instance_uid for s in series_rows(web) if s.id == second)
    assert f'title="{uid}"' in row and f">{uid}<" not in row  # shortened, whole on hover
    assert f'<option value="{course_id}">course {course_id}: “Planning CT (test)” of' in row
    assert f"settings of course {course_id}: 3 mm PTV margin, 6 DOF, tissue mode" in row
    assert 'name="reason" maxlength="1000" required' in row
    assert 'id="nav-held-count">2</span>' in page.text

    worklist = web.get("/worklist")
    assert 'id="nav-held-count">2</span>' in worklist.text
    assert '<span id="held-banner-count">2</span> received DICOM series held' in worklist.text
    polled = web.get("/worklist/rows", headers={"X-Requested-By": "poll"})
    assert polled.headers["x-held-series"] == "2"


def test_other_roles_get_the_refusal_of_the_physicist_pages_and_decide_nothing(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    held = hold(web, archive, series.mvcts[0])
    assert web.get("/dicom/held").headers["location"] == "/login?next=/dicom/held"
    for who in ("terry", "dr-who"):
        web.cookies.clear()
        sign_in(web, who)
        page = web.get("/dicom/held", headers={"Accept": "text/html"})
        assert page.status_code == 403
        assert "the held DICOM series are for physicists" in page.text
        worklist = web.get("/worklist")
        assert 'href="/dicom/held"' not in worklist.text and "held-banner" not in worklist.text
        assert "x-held-series" not in web.get("/worklist/rows").headers
        refused = web.post(
            f"/dicom/held/{held}/discard",
            data={"csrf_token": csrf_of(worklist.text), "reason": "not mine to decide"},
        )
        assert refused.status_code == 403
        assert refused.json()["detail"] == "the held DICOM series are for physicists"
    assert [h["series_id"] for h in unassigned(web)] == [held]


def test_a_decision_without_the_pages_csrf_token_decides_nothing_and_says_so(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    held = hold(web, archive, series.mvcts[0])
    sign_in(web, PHYSICIST)
    for token in ({}, {"csrf_token": "x" * 40}):
        response = web.post(f"/dicom/held/{held}/discard", data={"reason": "forged", **token})
        assert response.status_code == 403
        assert "CSRF check failed): nothing was decided" in response.text
        assert held_ids(response.text) == [held]
    assert [h["series_id"] for h in unassigned(web)] == [held]


def test_a_physicist_makes_a_held_ct_a_new_course_then_a_held_mvct_a_fraction_of_it(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    planning = hold(web, archive, series.planning)  # a first CT of a patient: held as well
    sign_in(web, PHYSICIST)
    page = web.get("/dicom/held")
    assert "has no course: it cannot be an MVCT" in page.text
    assert "a first course of this patient, with the defaults: 3 mm PTV margin, 6 DOF" in page.text

    made = decide(web, planning, "assign", **{"as": "planning", "note": "the planning CT"})
    assert made.status_code == 303
    assert made.headers["location"] == f"/dicom/held?decided={planning}#recent"
    (course,) = web.get("/api/v1/courses", auth=(PHYSICIST, PASSWORD)).json()["courses"]
    shown = web.get(made.headers["location"])
    assert f"is the planning CT of course {course['id']}. Decided by web:{PHYSICIST}" in (
        shown.text
    )

    mvct = hold(web, archive, series.mvcts[0])
    assigned = decide(web, mvct, "assign", **{"as": "mvct", "course_id": str(course["id"])})
    assert assigned.status_code == 303, assigned.text
    shown = web.get(assigned.headers["location"])
    (fraction_id,) = re.findall(r"\(fraction (\d+), queued for registration", shown.text)
    assert f'data-fraction-id="{fraction_id}"' in web.get("/worklist").text
    assert unassigned(web) == []
    assert 'id="nav-held-count">0</span>' in shown.text

    with web.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        audit = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "dicom_series_assigned")
            .order_by(AuditEvent.id)
        ).all()
    assert [(a.actor, a.detail["resolution"], a.detail["note"]) for a in audit] == [
        (f"web:{PHYSICIST}", "planning", "the planning CT"),
        (f"web:{PHYSICIST}", "mvct", ""),
    ]


def test_a_wrong_decision_form_is_refused_on_the_page_and_the_series_stays_held(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    create_course(web, sf.add_api_key(web, "console-1"), series.planning)
    held = hold(web, archive, series.mvcts[0])
    sign_in(web, PHYSICIST)
    for form, words in (
        ({"reason": "  "}, "say why the series is discarded"),
        ({"as": "mvct"}, "choose the course this MVCT belongs to"),
        ({"as": "mvct", "course_id": "abc"}, "course 'abc' is not a course id"),
        ({"as": "mvct", "course_id": "999"}, "course 999 does not exist"),
        ({"as": "mvct", "course_id": "1", "note": "line\nbreak"}, "control characters"),
    ):
        action = "discard" if "reason" in form else "assign"
        response = decide(web, held, action, **form)
        assert response.status_code in (404, 422), (form, response.status_code)
        assert "Not done." in response.text and words in unescape(response.text), form
        assert "Traceback" not in response.text
        assert held_ids(response.text) == [held]
    assert fractions(web) == 0
    assert [h["series_id"] for h in unassigned(web)] == [held]


def test_discarding_from_the_page_needs_a_reason_and_is_audited(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    held = hold(web, archive, series.mvcts[0])
    sign_in(web, PHYSICIST)
    reason = "a test series sent by the vendor's engineer"
    discarded = decide(web, held, "discard", reason=reason)
    assert discarded.status_code == 303
    shown = web.get(discarded.headers["location"])
    assert f"was discarded by web:{PHYSICIST}: {reason}" in unescape(shown.text)
    assert held_ids(shown.text) == [] and "No series is held" in shown.text
    with web.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        audit = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "dicom_series_discarded")
        ).one()
    assert (audit.actor, audit.entity_id, audit.detail["note"]) == (
        f"web:{PHYSICIST}",
        str(held),
        reason,
    )


def test_when_someone_decided_first_the_page_says_who_and_what_and_changes_nothing(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    course_id = create_course(web, sf.add_api_key(web, "console-1"), series.planning)
    held = hold(web, archive, series.mvcts[0])
    sign_in(web, PHYSICIST)
    stale = web.get("/dicom/held")  # the page is open; a colleague decides meanwhile (API)
    first = web.post(
        f"/api/v1/dicom/unassigned/{held}/discard",
        json={"reason": "a repeat scan, the other one is used"},
        auth=(OTHER_PHYSICIST, PASSWORD),
    )
    assert first.status_code == 200, first.text

    late = web.post(
        f"/dicom/held/{held}/assign",
        data={"csrf_token": csrf_of(stale.text), "as": "mvct", "course_id": str(course_id)},
    )
    assert late.status_code == 409
    assert "Someone decided first; nothing was changed." in late.text
    assert f"series {held} was already decided: discarded by user:{OTHER_PHYSICIST}" in late.text
    assert held_ids(late.text) == []  # the list as it is now
    assert "a repeat scan, the other one is used" in late.text  # in "Decided recently"
    assert fractions(web) == 0


def test_two_physicists_deciding_at_the_same_moment_get_one_decision_and_one_409(
    web: TestClient, archive: dict[str, str], series: sf.Samples
) -> None:
    held = hold(web, archive, series.mvcts[0])
    clients = [web, TestClient(web.app, follow_redirects=False)]
    forms = []
    for client, who in zip(clients, (PHYSICIST, OTHER_PHYSICIST), strict=True):
        sign_in(client, who)
        forms.append({"csrf_token": csrf_of(client.get("/dicom/held").text), "reason": who})
    answers: list[Any] = [None, None]
    start = threading.Barrier(2)

    def race(i: int) -> None:
        start.wait()
        answers[i] = clients[i].post(f"/dicom/held/{held}/discard", data=forms[i])

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [303, 409]
    winner = (PHYSICIST, OTHER_PHYSICIST)[[a.status_code for a in answers].index(303)]
    loser = next(a for a in answers if a.status_code == 409)
    assert f"discarded by web:{winner}" in loser.text
    with web.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        audit = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "dicom_series_discarded")
        ).all()
    assert [a.detail["note"] for a in audit] == [winner]
