"""GET /api/v1/reports/weekly: formats, sources, periods, roles and refusals.

The data set is made by hand and inserted through the ORM (no registration runs). Expected
statistics are computed here with numpy from the table below (mean, ``ddof=1`` SD, root mean
square), never read back from :mod:`registration.stats`.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pypdf
import pytest
import report_data
import service_fixtures as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fixtures import TestClient
from sqlalchemy import func, select

from app.db.models import Course, Fraction, ImageSeries, Job, RegistrationResult, Role, User
from app.db.models_signoff import Signoff
from app.services.accounts import add_user
from app.services.reports import CSV_COLUMNS

URL = "/api/v1/reports/weekly"
WEEK = "2026-W46"  # Monday 9 to Sunday 15 November 2026
MONDAY = datetime.date(2026, 11, 9)

Shift = tuple[float, float, float, float, float, float]  # lat, long, vert mm; pitch, roll, yaw deg


@dataclass(frozen=True)
class F:
    """One hand-made fraction: ``day`` counts from MONDAY (negative: the week before)."""

    patient: str
    number: int
    day: int
    registration: Shift | None  #: None: no result yet (job queued)
    decision: str | None = None  #: None: no sign-off
    signed: Shift | None = None  #: the signed correction (None when rejected)


def z(lateral: float, longitudinal: float = 0.0, vertical: float = 0.0, roll: float = 0.0) -> Shift:
    return (lateral, longitudinal, vertical, 0.0, roll, 0.0)


# Courses: PA, PB, PD head and neck with a 3 mm margin; PC prostate with 5 mm.
COURSES = {"PA": ("head and neck", 3.0), "PB": ("head and neck", 3.0), "PC": ("prostate", 5.0)}
COURSES["PD"] = ("head and neck", 3.0)
FRACTIONS = (
    F("PA", 1, 0, z(1.0, 2.0, -1.0, 0.5), "approved", z(1.0, 2.0, -1.0, 0.5)),
    # the physician adjusted the lateral shift from 3.0 to 2.0 mm
    F("PA", 2, 1, z(3.0, 0.0, -1.0, 0.3), "approved_adjusted", z(2.0, 0.0, -1.0, 0.3)),
    F("PA", 3, 2, z(2.0, 1.0, 0.0, 0.1)),  # awaiting a sign-off
    F("PB", 1, 0, z(-1.0, 0.5, 0.0, -0.2), "approved", z(-1.0, 0.5, 0.0, -0.2)),
    F("PB", 2, 3, z(-2.0, 1.5, 1.0, 0.0), "approved", z(-2.0, 1.5, 1.0, 0.0)),
    F("PB", 3, 4, z(4.0, 4.0, 4.0, 0.0), "rejected", None),
    F("PB", 4, 4, None),  # no registration result: not listed
    F("PC", 1, 1, z(0.5, -0.5, 0.5, 0.2), "approved", z(0.5, -0.5, 0.5, 0.2)),
    # PD: three fractions the week before (mean lateral 3 mm: a NAL warning), one in the week
    F("PD", 1, -7, z(3.0), "approved", z(3.0)),
    F("PD", 2, -6, z(2.5), "approved", z(2.5)),
    F("PD", 3, -5, z(3.5), "approved", z(3.5)),
    F("PD", 4, 2, z(2.0), "approved", z(2.0)),
    F("PA", 4, 7, z(9.0), "approved", z(9.0)),  # the Monday after: outside the week
)


def in_week(f: F) -> bool:
    return 0 <= f.day <= 6


def counted(source: str) -> dict[str, list[Shift]]:
    """The shifts that must count, per patient, by the rules of the report (written out here)."""
    shifts: dict[str, list[Shift]] = {}
    for f in FRACTIONS:
        if not in_week(f) or f.registration is None or f.decision == "rejected":
            continue
        value = f.registration if source == "registration" else f.signed
        if value is not None:
            shifts.setdefault(f.patient, []).append(value)
    return shifts


def expected_lateral(source: str) -> dict[str, Any]:
    """Lateral m_p and s_p per patient, M, Σ, σ and the number of fractions, flat."""
    shifts = counted(source)
    lateral = {p: np.array([s[0] for s in v]) for p, v in sorted(shifts.items())}
    means = np.array([v.mean() for v in lateral.values()])
    sds = np.array([v.std(ddof=1) for v in lateral.values() if v.size > 1])
    expected: dict[str, Any] = {
        "M": float(means.mean()),
        "Sigma": float(means.std(ddof=1)),
        "sigma": float(np.sqrt(np.mean(sds**2))),
        "n": sum(len(v) for v in shifts.values()),
    }
    for p, v in lateral.items():
        expected[f"mean {p}"] = float(v.mean())
        expected[f"sd {p}"] = float(v.std(ddof=1)) if v.size > 1 else None
    return expected


def at(day: int, hour: int = 9) -> datetime.datetime:
    date = MONDAY + datetime.timedelta(days=day)
    return datetime.datetime.combine(date, datetime.time(hour), datetime.UTC)


def insert(client: TestClient, fractions: tuple[F, ...] = FRACTIONS) -> None:
    """Courses, fractions, jobs, results and sign-offs straight into the app's database."""
    ctx = client.app.state.context  # type: ignore[attr-defined]
    counter = itertools.count()

    def series(patient: str) -> ImageSeries:
        return report_data.image_series(next(counter), patient)

    with ctx.writer.begin() as session:
        signer = add_user(session, "dr-a", Role.PHYSICIAN, "Dr A. Signer", "a long password", "t")
        courses = {}
        for patient, (site, margin_mm) in COURSES.items():
            course = report_data.course(patient, series(patient), site, margin_mm)
            session.add(course)
            courses[patient] = course
        session.flush()
        for f in fractions:
            add_fraction(session, courses[f.patient], series(f.patient), f, signer)


def add_fraction(session: Any, course: Course, mvct: ImageSeries, f: F, signer: User) -> None:
    same_number = (Fraction.course_id == course.id) & (Fraction.fraction_number == f.number)
    fraction = Fraction(
        course_id=course.id,
        patient_id=f.patient,
        mvct_series=mvct,
        fraction_number=f.number,
        image_number=1 + (session.scalar(select(func.count()).where(same_number)) or 0),
        dof=6,
        mode="tissue",
        created_at=at(f.day),
        created_by="test",
    )
    session.add(fraction)
    session.flush()
    session.add(Job(fraction_id=fraction.id, status="queued" if f.registration is None else "done"))
    if f.registration is None:
        return
    names = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")
    values = dict(zip(names, f.registration, strict=True))
    session.add(
        RegistrationResult(
            fraction_id=fraction.id, result={"couch_correction": values}, trusted=True, **values
        )
    )
    if f.decision is None:
        return
    signed = dict(zip(names, f.signed, strict=True)) if f.signed else {}
    session.add(
        Signoff(
            fraction_id=fraction.id,
            decision=f.decision,
            reason=None if f.decision == "approved" else "test",
            override_large_shift=False,
            signer_user_id=signer.id,
            printed_name=signer.full_name,
            meaning=f.decision,
            signed_at=at(f.day, 10),
            record_sha256="0" * 64,
            **signed,
        )
    )


@pytest.fixture
def data(client: TestClient) -> Iterator[TestClient]:
    """The app with the hand-made data and a physicist's API key (see :func:`get`)."""
    client.headers.update(sf.add_api_key(client, "physics-1", Role.PHYSICIST))
    insert(client)
    yield client


@pytest.fixture
def sqlite_data(sqlite_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """As :func:`data`, on SQLite only: for what does not depend on the database."""
    with TestClient(sf.create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        client.headers.update(sf.add_api_key(client, "physics-1", Role.PHYSICIST))
        insert(client)
        yield client


def get(client: TestClient, **params: str) -> Any:
    """As the physicist of :func:`data` (an API key: password hashing is slow on purpose)."""
    return client.get(URL, params=params)


def lateral_of(report: dict[str, Any]) -> dict[str, Any]:
    """The same quantities as :func:`expected_lateral`, read from the JSON report."""
    stats = report["statistics"]
    pop = stats["population"]["lateral"]
    found: dict[str, Any] = {
        "M": pop["mean_mm"],
        "Sigma": pop["systematic_sd_mm"],
        "sigma": pop["random_rms_mm"],
        "n": stats["n_fractions"],
    }
    for patient in stats["patients"]:
        found[f"mean {patient['patient_id']}"] = patient["lateral"]["mean_mm"]
        found[f"sd {patient['patient_id']}"] = patient["lateral"]["sd_mm"]
    return found


# --- JSON and the shift sources ---------------------------------------------------------------


def test_the_json_report_of_signed_shifts_matches_an_independent_computation(
    data: TestClient,
) -> None:
    response = get(data, week=WEEK)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["shift_source"] == "signed"
    assert report["period"] == {
        "label": WEEK,
        "start": "2026-11-09",
        "end": "2026-11-15",
        "description": "2026-W46 (9–15 Nov 2026)",
    }
    assert lateral_of(report) == pytest.approx(expected_lateral("signed"))
    assert report["statistics"]["n_patients"] == 4


def test_registration_and_signed_sources_differ_where_a_physician_adjusted_the_shift(
    data: TestClient,
) -> None:
    by_source = {s: get(data, week=WEEK, source=s).json() for s in ("registration", "signed")}
    registration, signed = (lateral_of(by_source[s]) for s in ("registration", "signed"))
    assert registration == pytest.approx(expected_lateral("registration"))
    assert registration["mean PA"] == pytest.approx(2.0)  # 1, 3, 2 as registered
    assert signed["mean PA"] == pytest.approx(1.5)  # 1, 2 signed; the third awaits
    assert (registration["n"], signed["n"]) == (7, 6)
    assert registration["M"] != pytest.approx(signed["M"])


def test_awaiting_and_rejected_fractions_are_listed_but_not_counted_and_the_notes_say_so(
    data: TestClient,
) -> None:
    report = get(data, week=WEEK).json()
    rows = {(r["patient_id"], r["fraction_number"]): r for r in report["rows"]}
    assert sorted(rows) == [
        ("PA", 1), ("PA", 2), ("PA", 3), ("PB", 1), ("PB", 2), ("PB", 3), ("PC", 1), ("PD", 4),
    ]  # fmt: skip
    awaiting, rejected = rows[("PA", 3)], rows[("PB", 3)]
    assert (awaiting["decision"], awaiting["counted"], awaiting["lateral_mm"]) == (
        "awaiting",
        False,
        None,
    )
    assert (rejected["decision"], rejected["counted"], rejected["vector_mm"]) == (
        "rejected",
        False,
        None,
    )
    adjusted = rows[("PA", 2)]
    assert (adjusted["decision"], adjusted["lateral_mm"], adjusted["signed_by"]) == (
        "approved_adjusted",
        2.0,
        "Dr A. Signer",
    )
    notes = " ".join(report["notes"])
    assert "1 fraction(s) awaiting a sign-off are listed but not counted" in notes
    assert "1 rejected fraction(s) are listed but not counted" in notes
    assert "1 fraction(s) of the period have no registration result" in notes
    # PC's course has a 5 mm margin, the others 3 mm: one margin is used, and the notes say so
    assert report["margin_in_use_mm"] == 3.0
    assert "3 mm (3 courses), 5 mm (1 course)" in notes


def test_the_rejected_shift_does_not_count_under_the_registration_source_either(
    data: TestClient,
) -> None:
    report = get(data, week=WEEK, source="registration").json()
    pb = next(p for p in report["statistics"]["patients"] if p["patient_id"] == "PB")
    assert pb["n_fractions"] == 2 and pb["lateral"]["max_abs_mm"] == 2.0
    row = next(r for r in report["rows"] if (r["patient_id"], r["fraction_number"]) == ("PB", 3))
    assert (row["lateral_mm"], row["decision"], row["counted"]) == (4.0, "rejected", False)


def test_a_repeat_image_of_a_fraction_is_listed_but_only_the_first_image_counts(
    client: TestClient,
) -> None:
    client.headers.update(sf.add_api_key(client, "physics-1", Role.PHYSICIST))
    first, verification = z(1.0, 1.0), z(0.2, 0.1)  # a verification MVCT after the correction
    second = z(3.0, -1.0)
    insert(
        client,
        (
            F("PA", 1, 0, first, "approved", first),
            F("PA", 1, 0, verification, "approved", verification),
            F("PA", 2, 1, second, "approved", second),
        ),
    )
    report = get(client, week=WEEK).json()
    rows = [(r["fraction_number"], r["lateral_mm"], r["counted"]) for r in report["rows"]]
    assert sorted(rows) == [(1, 0.2, False), (1, 1.0, True), (2, 3.0, True)]
    patient = report["statistics"]["patients"][0]
    assert patient["lateral"]["mean_mm"] == pytest.approx(np.mean([1.0, 3.0]))
    assert "1 repeat image(s) of a fraction number that already counts" in " ".join(report["notes"])


def test_early_warnings_read_the_first_fractions_of_the_week_before(data: TestClient) -> None:
    warnings = get(data, week=WEEK).json()["statistics"]["warnings"]
    nal = [w for w in warnings if w["kind"] == "nal"]
    assert [(w["patient_id"], w["axis"]) for w in nal] == [("PD", "lateral")]
    assert nal[0]["value_mm"] == pytest.approx(np.mean([3.0, 2.5, 3.5]))
    pd_stats = next(
        p for p in get(data, week=WEEK).json()["statistics"]["patients"] if p["patient_id"] == "PD"
    )
    assert pd_stats["n_fractions"] == 1  # the earlier fractions count in the warnings only


def test_a_site_filter_keeps_that_sites_courses_and_their_shared_margin(
    data: TestClient,
) -> None:
    report = get(data, week=WEEK, site="prostate").json()
    assert {r["patient_id"] for r in report["rows"]} == {"PC"}
    assert report["site"] == "prostate" and report["margin_in_use_mm"] == 5.0
    assert get(data, week=WEEK, site="prostate", margin_mm="4").json()["margin_in_use_mm"] == 4.0


def test_an_unknown_site_gives_an_empty_report_that_names_the_known_sites(
    data: TestClient,
) -> None:
    report = get(data, week=WEEK, site="Head and Neck").json()
    assert report["rows"] == [] and report["statistics"]["n_fractions"] == 0
    assert "the sites of the courses are: 'head and neck', 'prostate'." in " ".join(report["notes"])


def test_a_date_range_and_a_cumulative_view_cover_whole_days(data: TestClient) -> None:
    ranged = get(data, **{"from": "2026-11-02", "to": "2026-11-09"}).json()
    assert ranged["period"]["description"] == "2–9 Nov 2026"
    listed = {(r["patient_id"], r["fraction_number"]) for r in ranged["rows"]}
    assert listed == {("PD", 1), ("PD", 2), ("PD", 3), ("PA", 1), ("PB", 1)}
    since = get(data, since="2026-11-02").json()
    assert since["period"]["label"] == "since 2026-11-02"
    assert len(since["rows"]) == 12  # every fraction with a result, PA's last included


# --- files -------------------------------------------------------------------------------------


def test_the_csv_export_has_its_header_and_one_row_per_listed_fraction(data: TestClient) -> None:
    response = get(data, week=WEEK, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="setup-errors_2026-W46_signed.csv"'
    )
    table = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert tuple(table[0]) == CSV_COLUMNS
    assert len(table) == 8
    awaiting = next(r for r in table if (r["patient_id"], r["fraction_number"]) == ("PA", "3"))
    assert (awaiting["decision"], awaiting["lateral_mm"]) == ("awaiting", "")


def test_the_xlsx_export_opens_with_its_sheets(data: TestClient) -> None:
    response = get(data, week=WEEK, format="xlsx", site="head and neck", source="registration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert (
        'filename="setup-errors_2026-W46_head-and-neck_registration.xlsx"'
        in (response.headers["content-disposition"])
    )
    workbook = openpyxl.load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames == list(report_data.WORKBOOK_SHEETS)
    assert workbook["Fractions"].max_row == 1 + 7  # PC is prostate


def test_the_pdf_export_carries_the_date_range_on_every_page(data: TestClient) -> None:
    response = get(data, week=WEEK, format="pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("inline; filename=")
    pages = [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(response.content)).pages]
    assert pages and all("2026-W46 (9–15 Nov 2026)" in text for text in pages)
    assert "awaiting a sign-off" in " ".join(" ".join(pages).split())


def test_the_html_page_opens_in_the_browser(data: TestClient) -> None:
    response = get(data, week=WEEK, format="html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-disposition"].startswith("inline; filename=")
    assert "2026-W46 (9–15 Nov 2026)" in response.text and "data:image/png" in response.text


@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx", "pdf", "html"])
def test_an_empty_week_is_a_valid_report_in_every_format(sqlite_data: TestClient, fmt: str) -> None:
    response = get(sqlite_data, week="2026-W40", format=fmt)
    assert response.status_code == 200, response.text
    body = response.content
    if fmt == "json":
        assert json.loads(body)["rows"] == [] and json.loads(body)["statistics"]["n_patients"] == 0
    elif fmt == "csv":
        assert body.decode().splitlines() == [",".join(CSV_COLUMNS)]
    elif fmt == "xlsx":
        assert openpyxl.load_workbook(io.BytesIO(body))["Fractions"].max_row == 1
    elif fmt == "pdf":
        text = pypdf.PdfReader(io.BytesIO(body)).pages[0].extract_text()
        assert "No fractions" in text
    else:
        assert "No fractions" in response.text


# --- who may ask, and what is refused -----------------------------------------------------------


def test_only_physicists_and_admins_may_export_reports(sqlite_url: str, tmp_path: Path) -> None:
    with TestClient(sf.create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        assert client.get(URL, params={"week": WEEK}).status_code == 401
        for role in Role:
            sf.add_person(client, f"user-{role.value}", role)
            auth = (f"user-{role.value}", "correct horse")
            response = client.get(URL, params={"week": WEEK}, auth=auth)
            expected = 200 if role in (Role.PHYSICIST, Role.ADMIN) else 403
            assert response.status_code == expected, role
            if expected == 403:
                assert "needs: admin, physicist" in response.json()["detail"]
        console = sf.add_api_key(client, "console-1")
        assert client.get(URL, params={"week": WEEK}, headers=console).status_code == 403


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "say which period"),
        ({"week": "2026-W60"}, "week=2026-W60: give an ISO week as YYYY-Www"),
        ({"week": "9999-W52"}, "give an ISO week"),
        ({"week": "2026-48"}, "YYYY-Www"),
        ({"week": WEEK, "since": "2026-11-01"}, "give one period, not week and since"),
        ({"from": "2026-11-01"}, "to is missing"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "is before from=2026-11-10"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, "from=2026-02-30: give a date as YYYY-MM-DD"),
        ({"since": "2999-01-01"}, "is after today"),
        ({"week": WEEK, "format": "docx"}, "format: Input should be"),
        ({"week": WEEK, "source": "console"}, "source: Input should be"),
        ({"week": WEEK, "margin_mm": "0"}, "margin_mm: Input should be greater than 0"),
        ({"week": WEEK, "margin_mm": "nan"}, "margin_mm"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(
    sqlite_data: TestClient, params: dict[str, str], words: str
) -> None:
    response = get(sqlite_data, **params)
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_the_residual_source_lists_fractions_without_a_residual_but_never_counts_them(
    data: TestClient,
) -> None:
    """These hand-made rows carry no measured motion: no residual, a note says so, no error."""
    response = get(data, week=WEEK, source="residual", format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["shift_source"] == "residual"
    assert not any(row["counted"] for row in body["rows"])
    assert any("without the measured motion" in note for note in body["notes"])


def test_no_combination_of_parameters_makes_the_report_fail(
    sqlite_url: str, tmp_path: Path
) -> None:
    text = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["2026-W46", "2026-11-09"]))
    settings_ = sf.make_settings(tmp_path, sqlite_url)
    with TestClient(sf.create_app(settings_)) as client:
        physicist = sf.add_api_key(client, "physics-1", Role.PHYSICIST)

        @given(
            week=text,
            start=text,
            end=text,
            since=text,
            site=text,
            fmt=st.sampled_from(["json", "csv"]),
            margin=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        )
        @settings(
            max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(
            week: Any, start: Any, end: Any, since: Any, site: Any, fmt: str, margin: Any
        ) -> None:
            raw = {"week": week, "from": start, "to": end, "since": since, "site": site}
            params = {k: v for k, v in raw.items() if v is not None}
            params["format"] = fmt
            if margin is not None:
                params["margin_mm"] = str(margin)
            response = client.get(URL, params=params, headers=physicist)
            assert response.status_code in (200, 422), response.text
            if response.status_code == 422:
                assert isinstance(response.json()["detail"], str) and response.json()["detail"]

        run()
