"""The physicists' page of held DICOM series in a real browser (Debian chromium, Playwright).

An MVCT arrives by STOW-RS on a server with no MVCT description rule, so it is held. The
physicist sees the count in the worklist's nav (polled), opens the page, assigns the series as
an MVCT of the patient's course, and finds the new fraction on the worklist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import review_data
import service_fixtures as sf
from e2e_support import PASSWORD, LiveServer, serving, sign_in

from app.db.models import Role
from app.main import create_app
from app.services.accounts import add_user

PHYSICIST = ("phys-held", "E2E Held Physicist")


@pytest.fixture(scope="module")
def held_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own (no workers) that holds every series no planning rule names."""
    root = tmp_path_factory.mktemp("held-e2e")
    (root / "db").mkdir()
    settings = sf.make_settings(
        root,
        f"sqlite:///{root / 'db' / 'held.sqlite3'}",
        dicom_quiet_s=0.2,
        dicom_mvct_pattern="",
        worklist_poll_seconds=1,
    )
    app = create_app(settings)
    with serving(app) as base_url:
        ctx = app.state.context
        with ctx.writer.begin() as session:
            add_user(session, PHYSICIST[0], Role.PHYSICIST, PHYSICIST[1], PASSWORD, "test")
        series = sf.samples(tmp_path_factory.mktemp("series"))
        yield LiveServer(base_url, app, review_data.console_key(ctx), series)


def test_a_physicist_assigns_a_held_mvct_to_its_course_and_it_appears_on_the_worklist(
    context: Any, held_server: LiveServer, shots: Any
) -> None:
    server = held_server
    archive = review_data.console_key(server.app.state.context, "archive")
    mvct = server.series.mvcts[4]
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        course = client.post(
            "/api/v1/courses",
            headers=server.console,
            data={"patient_id": sf.PATIENT_ID},
            files=review_data.upload("planning", server.series.planning),
        )
        assert course.status_code == 201, course.text
        course_id = course.json()["id"]
        body, content_type = sf.stow_multipart([p.read_bytes() for p in sorted(mvct.iterdir())])
        stored = client.post("/dicomweb/studies", content=body, headers={**archive, **content_type})
        assert stored.status_code == 200, stored.text

    page = context.new_page()
    sign_in(page, server, PHYSICIST)
    page.wait_for_selector("#nav-held-count.some")  # at once, or at the next poll
    assert page.inner_text("#nav-held-count") == "1"
    assert page.is_visible("#held-banner")
    assert page.locator("#worklist-rows tr[data-fraction-id]").count() == 0
    page.click("#nav-held")
    page.wait_for_url("**/dicom/held")
    row = page.locator("#held tr.series")
    assert row.count() == 1 and sf.PATIENT_ID in row.inner_text()
    series_id = row.get_attribute("data-series-id")
    page.select_option(f"#mvct-course-{series_id}", str(course_id))
    page.fill(f"#mvct-note-{series_id}", "today's MVCT, resent from the archive")
    shots(page, "held")

    page.click(f"#assign-mvct-{series_id}")
    page.wait_for_url("**/dicom/held?decided=*")
    notice = page.inner_text("#notice")
    assert f"is an MVCT of course {course_id}" in notice
    found = re.search(r"\(fraction (\d+),", notice)
    assert found, notice
    assert page.locator("#held tr.series").count() == 0
    assert page.inner_text("#nav-held-count") == "0"
    shots(page, "decided")

    page.click("header.top nav a[href='/worklist']")
    page.wait_for_url("**/worklist")
    fraction_row = page.locator(f'#worklist-rows tr[data-fraction-id="{found.group(1)}"]')
    assert sf.PATIENT_ID in fraction_row.inner_text()
    assert "awaiting registration" in fraction_row.inner_text()  # no workers in this server
    assert page.is_hidden("#held-banner")
    shots(page, "worklist")
