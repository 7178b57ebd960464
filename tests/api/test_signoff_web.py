"""The review pages without a browser: sessions, CSRF, roles, the compact review volumes.

The browser itself is driven in tests/e2e; here the HTTP contract of the pages is checked on
SQLite (the session and signature tables are checked on both databases in test_signoff_api).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import review_data
import service_fixtures as sf
import SimpleITK as sitk
from service_fixtures import TestClient, create_app
from sqlalchemy import select, update

from app.db.models import AuditEvent, Role, User, utcnow
from app.db.models_signoff import BrowserSession, Signoff
from app.services import ratelimit
from app.web.volumes import NO_DATA, Box, review_grid
from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.dicom_series import read_ct_series
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps

PASSWORD = "correct horse"
COOKIE = "mvct_guide_session"


@pytest.fixture
def web(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(sf.make_settings(tmp_path, sqlite_url))
    with TestClient(app, follow_redirects=False) as client:
        sf.add_person(client, "dr-who", Role.PHYSICIAN, PASSWORD)
        sf.add_person(client, "terry", Role.THERAPIST, PASSWORD)
        sf.add_person(client, "root", Role.ADMIN, PASSWORD)
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: TestClient, username: str = "dr-who", password: str = PASSWORD) -> Any:
    form = client.get("/login")
    assert form.status_code == 200
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(form.text),
            "next": "/worklist",
        },
    )


def registered_fraction(
    client: TestClient, series: sf.Samples, index: int = 0, lateral_error_mm: float = 0.0
) -> int:
    ctx = client.app.state.context  # type: ignore[attr-defined]
    body = review_data.post_fraction(
        client,
        review_data.console_key(ctx, f"console-{index}"),
        series.mvcts[index],
        planning=series.planning,
        patient_id=sf.PATIENT_ID,
        isocenter=f"{series.isocenter.x_mm},{series.isocenter.y_mm},{series.isocenter.z_mm}",
    )
    result = review_data.known_result(
        series.motions[index],
        series.isocenter,
        PatientPosition.HFS,
        lateral_error_mm=lateral_error_mm,
    )
    review_data.store_result(ctx, body["id"], result)
    return int(body["id"])


def sessions_rows(client: TestClient) -> list[BrowserSession]:
    with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        return list(db.scalars(select(BrowserSession).order_by(BrowserSession.id)))


def test_signing_in_sets_an_httponly_strict_cookie_whose_token_is_stored_only_hashed(
    web: TestClient,
) -> None:
    assert web.get("/worklist").headers["location"] == "/login?next=/worklist"
    response = sign_in(web)
    assert response.status_code == 303 and response.headers["location"] == "/worklist"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    rows = sessions_rows(web)
    assert [r.user_id is not None for r in rows] == [True]  # created at sign-in only
    assert all(token not in (r.token_sha256, r.csrf_secret) for r in rows)
    page = web.get("/worklist")
    assert page.status_code == 200 and "dr-who (test)" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_a_secure_deployment_sends_a_host_prefixed_secure_cookie(web: TestClient) -> None:
    settings = web.app.state.context.settings  # type: ignore[attr-defined]
    web.app.state.web_settings = settings.model_copy(update={"cookie_secure": True})  # type: ignore[attr-defined]
    response = web.get("/login")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-mvct_guide_login=") and "Secure" in cookie


def test_a_wrong_password_or_a_missing_csrf_token_does_not_sign_in(web: TestClient) -> None:
    wrong = sign_in(web, password="wrong horse")
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    web.get("/login")
    forged = web.post("/login", data={"username": "dr-who", "password": PASSWORD})
    assert forged.status_code == 403 and "did not come from this page" in forged.text
    assert web.get("/worklist").status_code == 303
    with web.app.state.context.writer() as db:  # type: ignore[attr-defined]
        ratelimit.flush_audit(db, utcnow() + timedelta(minutes=2))
        db.commit()
        actions = list(db.scalars(select(AuditEvent.action)))
    assert actions.count("sign_in_failed") == 1 and "signed_in" not in actions


def test_accounts_without_patient_access_cannot_use_the_pages(web: TestClient) -> None:
    response = sign_in(web, username="root")
    assert response.status_code == 401 and "admin role cannot use the review pages" in response.text


def test_signing_out_revokes_the_session_on_the_server(web: TestClient) -> None:
    sign_in(web)
    token = web.cookies.get(COOKIE)
    page = web.get("/worklist")
    assert web.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    web.cookies.set(COOKIE, token)  # a copied cookie is no use after sign-out
    assert web.get("/worklist").status_code == 303
    assert sessions_rows(web)[-1].revoked_at is not None


def test_an_idle_session_ends_and_polling_does_not_keep_it_alive(web: TestClient) -> None:
    sign_in(web)
    ctx = web.app.state.context  # type: ignore[attr-defined]
    idle = web.app.state.web_settings.idle_seconds  # type: ignore[attr-defined]

    def age_session(seconds: float) -> None:
        with ctx.writer() as db:
            row = db.scalars(
                select(BrowserSession).where(BrowserSession.user_id.is_not(None))
            ).one()
            db.execute(
                update(BrowserSession)
                .where(BrowserSession.id == row.id)
                .values(last_seen_at=row.last_seen_at - timedelta(seconds=seconds))
            )
            db.commit()

    age_session(idle - 60)
    polled = web.get("/worklist/rows", headers={"X-Requested-By": "poll"})
    assert polled.status_code == 200
    age_session(120)  # the poll above did not count as activity
    assert web.get("/worklist/rows", headers={"X-Requested-By": "poll"}).status_code == 401
    assert web.get("/worklist").headers["location"] == "/login?next=/worklist"


def test_a_deactivated_user_loses_their_open_session(web: TestClient) -> None:
    sign_in(web)
    assert web.get("/worklist").status_code == 200
    with web.app.state.context.writer() as db:  # type: ignore[attr-defined]
        db.execute(update(User).where(User.username == "dr-who").values(active=False))
        db.commit()
    assert web.get("/worklist").status_code == 303


def test_the_sign_in_page_never_redirects_to_another_site(web: TestClient) -> None:
    form = web.get("/login?next=//evil.example/x")
    assert 'name="next" value="/worklist"' in form.text
    response = web.post(
        "/login",
        data={
            "username": "dr-who",
            "password": PASSWORD,
            "csrf_token": csrf_of(form.text),
            "next": "https://evil.example/",
        },
    )
    assert response.headers["location"] == "/worklist"


def test_a_link_from_another_site_hops_once_to_bring_the_strict_cookie(web: TestClient) -> None:
    response = web.get("/review/1", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert 'http-equiv="refresh" content="0;url=/review/1"' in response.text


def test_the_worklist_shows_todays_fractions_with_their_flags(
    web: TestClient, series: sf.Samples
) -> None:
    fraction_id = registered_fraction(web, series, lateral_error_mm=-2.0)
    sign_in(web)
    page = web.get("/worklist")
    assert f'data-fraction-id="{fraction_id}"' in page.text
    assert "awaiting review" in page.text and sf.PATIENT_ID in page.text
    assert "beyond 3.0 mm margin" in page.text  # lateral −4 mm
    rows = web.get("/worklist/rows", headers={"X-Requested-By": "poll"})
    assert rows.status_code == 200 and f'href="/review/{fraction_id}"' in rows.text
    assert "No fractions on this day" in web.get("/worklist?day=2001-01-01").text
    assert web.get("/worklist?day=2001-13-45").status_code == 400


def test_a_therapist_reads_the_review_but_cannot_sign_even_with_a_valid_form(
    web: TestClient, series: sf.Samples
) -> None:
    fraction_id = registered_fraction(web, series)
    sign_in(web, username="terry")
    page = web.get(f"/review/{fraction_id}")
    assert page.status_code == 200
    assert "Only a physician can sign" in page.text and 'id="sign-form"' not in page.text
    response = web.post(
        f"/review/{fraction_id}/sign",
        data={"csrf_token": csrf_of(page.text), "password": PASSWORD, "decision": "approved"},
    )
    assert response.status_code == 403
    assert "only a physician can sign" in response.json()["detail"]
    with web.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        assert db.scalars(select(Signoff)).all() == []


def test_signing_from_the_page_needs_the_csrf_token_and_the_password(
    web: TestClient, series: sf.Samples
) -> None:
    fraction_id = registered_fraction(web, series)
    sign_in(web)
    page = web.get(f"/review/{fraction_id}")
    form = {"password": PASSWORD, "decision": "approved"}
    forged = web.post(f"/review/{fraction_id}/sign", data=form)
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    other = web.post(f"/review/{fraction_id}/sign", data=form | {"csrf_token": "x" * 40})
    assert other.status_code == 403
    no_password = {"csrf_token": csrf_of(page.text), "decision": "approved"}
    assert web.post(f"/review/{fraction_id}/sign", data=no_password).status_code == 401
    signed = web.post(f"/review/{fraction_id}/sign", data=form | {"csrf_token": csrf_of(page.text)})
    assert signed.status_code == 201, signed.text
    assert signed.json()["signoff"]["decision"] == "approved"
    again = web.get(f"/review/{fraction_id}")
    assert "Approved couch correction" in again.text and "record verified" in again.text
    assert signed.json()["signoff"]["record_sha256"] in again.text


def test_the_review_grid_puts_the_isocentre_on_a_voxel_and_stays_small() -> None:
    planning = Box((-200.0, -150.0, -130.0), (230.0, 195.0, 50.0))
    mvct = Box((-196.7, -140.7, -101.0), (201.7, 257.7, 15.0))
    iso = (0.3, 60.1, -40.2)
    grid = review_grid(planning, mvct, iso)
    assert grid.voxels <= 2_400_000 and grid.spacing_mm in (1.5, 2.0)
    for axis in range(3):
        at = grid.origin_mm[axis] + grid.spacing_mm * grid.isocenter_index[axis]
        assert at == pytest.approx(iso[axis])
        assert grid.origin_mm[axis] >= planning.low[axis] - 1e-9
    last_z = grid.origin_mm[2] + grid.spacing_mm * (grid.size[2] - 1)
    assert last_z <= mvct.high[2] + 10.0 + 1e-9


def test_the_review_volumes_show_the_mvct_aligned_to_the_plan_after_the_correction(
    web: TestClient, series: sf.Samples
) -> None:
    """The volumes the browser draws from: after the correction (the MVCT sampled at M_C·p) the
    MVCT matches the planning CT far better than before (sampled at p)."""
    fraction_id = registered_fraction(web, series)
    assert web.get(f"/review/{fraction_id}/volumes").status_code == 401
    sign_in(web)
    grid = web.get(f"/review/{fraction_id}/volumes").json()
    nx, ny, nz = grid["size"]
    volumes = {}
    for name, url in grid["urls"].items():
        response = web.get(url)
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        volumes[name] = np.frombuffer(response.content, "<i2").reshape(nz, ny, nx)
    assert (volumes["mvct"] == NO_DATA).any() and (volumes["mvct"] != NO_DATA).any()
    assert not (volumes["planning"] == NO_DATA).any()
    stored = web.app.state.review_volumes.volume_path(grid["key"], "mvct")  # type: ignore[attr-defined]
    raw = gzip.decompress(stored.read_bytes())
    assert len(raw) == 2 * nx * ny * nz

    plan = volumes["planning"].astype(np.float32)
    mvct = sitk.GetImageFromArray(volumes["mvct"].astype(np.float32))
    mvct.SetOrigin(grid["origin_mm"])
    mvct.SetSpacing([grid["spacing_mm"]] * 3)
    result = review_data.known_result(series.motions[0], series.isocenter, PatientPosition.HFS)

    machine = CouchCorrection(**result["couch_correction"])
    m_c = correction_as_planning_to_daily(machine, LpsPoint(*grid_iso(grid)), PatientPosition.HFS)
    reference = sitk.GetImageFromArray(plan)
    reference.CopyInformation(mvct)
    body = plan > -500

    def mismatch(motion: RigidTransformLps) -> float:
        """Mean |MVCT(M·p) − planning(p)| over the body, HU (noise and blur leave ~60)."""
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(motion.rotation.ravel().tolist())
        transform.SetTranslation(motion.translation_mm.tolist())
        moved = sitk.Resample(mvct, reference, transform, sitk.sitkLinear, NO_DATA)
        values = sitk.GetArrayFromImage(moved)
        valid = body & (values >= -1024)  # interpolated next to NO_DATA is not data
        return float(np.mean(np.abs(values[valid] - plan[valid])))

    before = mismatch(RigidTransformLps.identity())
    wrong_sign = mismatch(RigidTransformLps.from_array(np.linalg.inv(m_c.as_array())))
    assert mismatch(m_c) < 0.75 * before < wrong_sign
    read = read_ct_series(sorted(series.planning.iterdir())).image
    iso_value = read.EvaluateAtPhysicalPoint(grid_iso(grid), sitk.sitkLinear)
    i, j, k = grid["isocenter_index"]
    assert volumes["planning"][k, j, i] == pytest.approx(np.clip(iso_value, -1024, 3071), abs=1)


def grid_iso(grid: dict[str, Any]) -> tuple[float, float, float]:
    return tuple(  # type: ignore[return-value]
        grid["origin_mm"][a] + grid["spacing_mm"] * grid["isocenter_index"][a] for a in range(3)
    )


def test_the_browser_sign_in_shares_the_rate_limit_of_every_password_check(
    web: TestClient,
) -> None:
    for _ in range(5):
        refused = sign_in(web, password="not-the-password")
        assert "wrong user name or password" in refused.text
    blocked = sign_in(web)  # the right password, after five failures
    assert "too many failed sign-ins" in blocked.text
    assert web.get("/worklist").headers["location"].startswith("/login")
