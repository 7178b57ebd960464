"""The physicists' report page in a real browser: the same report as the API, same data."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import service_fixtures as sf
from e2e_support import PASSWORD, LiveServer, sign_in

from app.db.models import Role
from app.services.accounts import add_user, create_api_key

PHYSICIST = ("phys-e2e", "E2E Physicist")


def test_a_physicist_picks_a_period_and_a_site_reads_the_report_and_downloads_the_csv(
    context: Any, server: LiveServer, shots: Any
) -> None:
    ctx = server.app.state.context
    with ctx.writer.begin() as session:
        add_user(session, PHYSICIST[0], Role.PHYSICIST, PHYSICIST[1], PASSWORD, "test")
    fraction = server.registered_fraction()
    today = datetime.datetime.now(datetime.UTC).date()
    week = f"{today.isocalendar().year}-W{today.isocalendar().week:02d}"
    page = context.new_page()
    sign_in(page, server, PHYSICIST)
    page.click("#nav-reports")
    page.wait_for_url("**/reports")
    page.fill("#week", week)
    page.select_option("#source", "registration")
    page.select_option("#site", "")
    page.click("#show")
    page.wait_for_url("**/reports?*")
    frame = page.frame_locator("#report")
    assert "Set-up error in three parts" in frame.locator("#three-parts").inner_text()
    assert "WITHOUT daily imaging" in frame.locator("body").inner_text()
    assert frame.locator("img").count() >= 1  # the plots
    shots(page, "report")
    with page.expect_download() as download_info:
        page.click("#download-csv")
    from_page = download_info.value.path().read_bytes()
    with ctx.writer.begin() as session:
        api_key = create_api_key(session, "physics-e2e", Role.PHYSICIST, "test")
    from_api = httpx.get(
        f"{server.base_url}/api/v1/reports/weekly",
        params={"week": week, "source": "registration", "format": "csv"},
        headers={"X-API-Key": api_key},
    ).content
    assert from_page == from_api
    assert sf.PATIENT_ID in from_page.decode()
    assert str(fraction["fraction_number"]) in from_page.decode()
