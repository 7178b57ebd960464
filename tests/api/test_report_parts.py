"""The report's three parts and offline protocols on a seeded week, checked with numpy here.

Three 6-DOF courses (no machine profile: the couch applies the refit exactly, so what the machine
leaves is zero), registered with known motions; one adjusted sign-off; one verification scan.
Expected values are computed in this file from the motions (numpy, ddof = 1), never read back
from registration.stats_parts.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import openpyxl
import pypdf
import pytest
import report_data
import review_data
import service_fixtures as sf
from service_fixtures import TestClient

from app.db.models import Course, Fraction, ImageSeries, Job, RegistrationResult, Role
from app.db.models_signoff import Signoff
from app.services.accounts import add_user
from registration.couch import couch_correction_6dof
from registration.frames import PatientPosition, rot_z
from registration.geometry import LpsPoint
from registration.simulate import rigid_about

URL = "/api/v1/reports/weekly"
WEEK = "2026-W46"
MONDAY = datetime.date(2026, 11, 9)
ISO = LpsPoint(10.0, -20.0, 30.0)
HFS = PatientPosition.HFS
#: per course: (LPS translation mm, roll deg) of each fraction's motion
MOTIONS = {
    "PA": [((2.0, -1.0, 0.5), 0.4), ((3.0, -0.5, 0.0), 0.6), ((2.5, -1.5, 1.0), 0.2)],
    "PB": [((-1.0, 0.5, -0.5), -0.3), ((-2.0, 1.0, 0.0), 0.0), ((-1.5, 0.0, -1.0), -0.5)],
    "PC": [((0.5, 2.0, 1.5), 0.1), ((1.0, 1.0, 2.5), 0.3), ((0.0, 1.5, 2.0), 0.2)],
}
ADJUSTED = ("PA", 2, 0.5)  #: the physician moved PA's 2nd fraction 0.5 mm further laterally
VERIFIED = ("PB", 3)  #: PB's 3rd fraction has a verification scan
LEFT = rigid_about(ISO, rot_z(0.2), (-0.4, 0.3, 0.1))  #: what that scan measured
#: PB's course has structures: per fraction the stored residual max at its two PTVs (mm); the
#: 3rd fraction (verified) has a large one that part (b) at the PTV must leave out
PTV_MAX_MM = {1: (0.4, 0.3), 2: (0.9, 1.1), 3: (5.0, 4.0)}


def motion(course: str, n: int) -> Any:
    (t, roll) = MOTIONS[course][n - 1]
    return rigid_about(ISO, rot_z(roll), t)


def at(day: int, hour: int = 9) -> datetime.datetime:
    return datetime.datetime.combine(
        MONDAY + datetime.timedelta(days=day), datetime.time(hour), datetime.UTC
    )


def insert(client: TestClient) -> None:
    ctx = client.app.state.context  # type: ignore[attr-defined]
    counter = itertools.count()

    def series(patient: str) -> ImageSeries:
        return report_data.image_series(next(counter), patient)

    def fraction(course: Course, number: int, day: int, hour: int, verifies: int | None) -> int:
        row = Fraction(
            course_id=course.id,
            patient_id=course.patient_id,
            mvct_series=series(course.patient_id),
            fraction_number=number,
            image_number=1 if verifies is None else 2,  # a verification is a further image
            dof=6,
            mode="tissue",
            created_at=at(day, hour),
            created_by="test",
            verifies_fraction_id=verifies,
        )
        session.add(row)
        session.flush()
        session.add(Job(fraction_id=row.id, status="done"))
        return row.id

    def result(fraction_id: int, moved: Any, residuals: Any = ()) -> dict[str, float]:
        data = review_data.known_result(moved, ISO, HFS)
        couch = data["couch_correction"]
        session.add(
            RegistrationResult(
                fraction_id=fraction_id,
                result=data,
                trusted=True,
                residuals=list(residuals),
                **couch,
            )
        )
        return dict(couch)

    def structures(patient: str, n: int) -> list[dict[str, Any]]:
        if patient != "PB":
            return []
        ptv, boost = PTV_MAX_MM[n]
        return [
            {"structure": "PTV_60", "type": "PTV", "max_mm": ptv, "p95_mm": ptv / 2},
            {"structure": "PTV_boost", "type": "PTV", "max_mm": boost, "p95_mm": boost / 2},
            {"structure": "Cord", "type": "ORGAN", "max_mm": 7.0, "p95_mm": 6.0},
        ]

    with ctx.writer.begin() as session:
        signer = add_user(session, "dr-a", Role.PHYSICIAN, "Dr A", "a long password", "t")
        for patient in MOTIONS:
            course = report_data.course(patient, series(patient))
            session.add(course)
            session.flush()
            for n in (1, 2, 3):
                fraction_id = fraction(course, n, n - 1, 9, None)
                signed = result(fraction_id, motion(patient, n), structures(patient, n))
                decision = "approved"
                if (patient, n) == ADJUSTED[:2]:
                    signed["lateral_mm"] += ADJUSTED[2]
                    decision = "approved_adjusted"
                session.add(
                    Signoff(
                        fraction_id=fraction_id,
                        decision=decision,
                        reason=None if decision == "approved" else "test",
                        override_large_shift=False,
                        signer_user_id=signer.id,
                        printed_name="Dr A",
                        meaning=decision,
                        signed_at=at(n - 1, 10),
                        record_sha256="0" * 64,
                        **signed,
                    )
                )
                if (patient, n) == VERIFIED:
                    scan = fraction(course, n, n - 1, 11, fraction_id)
                    result(scan, LEFT)


@pytest.fixture
def data(client: TestClient) -> Iterator[TestClient]:
    client.headers.update(sf.add_api_key(client, "physics-1", Role.PHYSICIST))
    insert(client)
    yield client


def lateral(moved: Any) -> float:
    return couch_correction_6dof(moved, ISO, HFS).lateral_mm


def population(values: dict[str, list[float]]) -> dict[str, float]:
    means = np.array([np.mean(v) for v in values.values()])
    sds = np.array([np.std(v, ddof=1) for v in values.values()])
    counts = np.array([len(v) for v in values.values()])
    plain = float(means.std(ddof=1))
    corrected = float(np.sqrt(max(0.0, plain**2 - np.mean(sds**2 / counts))))
    rms = float(np.sqrt(np.mean(sds**2)))
    return {"M": float(means.mean()), "Sigma": plain, "Sigma_c": corrected, "sigma": rms}


def expected_lateral() -> dict[str, dict[str, float]]:
    before = {p: [lateral(motion(p, n)) for n in (1, 2, 3)] for p in MOTIONS}
    residual = {p: [0.0, 0.0, 0.0] for p in MOTIONS}  # the 6-DOF couch leaves nothing
    residual[ADJUSTED[0]][ADJUSTED[1] - 1] = -ADJUSTED[2]  # … but the nudge is over-corrected
    residual[VERIFIED[0]][VERIFIED[1] - 1] = lateral(LEFT)  # measured after the move
    adjustment = {p: [0.0, 0.0, 0.0] for p in MOTIONS}
    adjustment[ADJUSTED[0]][ADJUSTED[1] - 1] = ADJUSTED[2]
    return {
        "before_correction": population(before),
        "residual": population(residual),
        "adjustment": population(adjustment),
    }


def test_the_three_parts_match_an_independent_computation(data: TestClient) -> None:
    body = data.get(URL, params={"week": WEEK}).json()
    parts = body["three_parts"]
    for part, expected in expected_lateral().items():
        got = parts[part]["lateral"]
        assert got["mean_mm"] == pytest.approx(expected["M"], abs=0.011), part
        assert got["systematic_sd_mm"] == pytest.approx(expected["Sigma"], abs=0.011), part
        assert got["systematic_sd_corrected_mm"] == pytest.approx(expected["Sigma_c"], abs=0.011), (
            part
        )
        assert got["random_rms_mm"] == pytest.approx(expected["sigma"], abs=0.011), part
    residual = parts["residual"]["lateral"]
    assert residual["van_herk_margin_mm"] == pytest.approx(
        2.5 * expected_lateral()["residual"]["Sigma_c"]
        + 0.7 * expected_lateral()["residual"]["sigma"],
        abs=0.03,
    )
    assert residual["verdict"] is not None
    assert parts["before_correction"]["lateral"]["verdict"] is None  # never judged
    assert parts["n_residual_from_verification"] == 1
    assert parts["n_adjusted_fractions"] == 1
    assert parts["before_correction"]["roll"]["systematic_sd_deg"] > 0.0  # measured rotations
    assert {(o["course_id"], o["protocol"]) for o in body["offline_protocols"]} >= {
        (str(c), p) for c in (1, 2, 3) for p in ("nal", "enal")
    }
    assert len(body["rows"]) == 9  # the verification scan is not a fraction


def test_source_residual_gives_each_fraction_its_residual(data: TestClient) -> None:
    body = data.get(URL, params={"week": WEEK, "source": "residual"}).json()
    by_key = {(r["course_id"], r["fraction_number"]): r for r in body["rows"]}
    assert by_key[("2", 3)]["lateral_mm"] == pytest.approx(lateral(LEFT), abs=1e-6)
    assert by_key[("1", 2)]["lateral_mm"] == pytest.approx(-ADJUSTED[2], abs=1e-6)
    assert by_key[("2", 3)]["residual_source"] == "verification"


def test_every_format_carries_the_three_parts_and_the_offline_protocols(
    data: TestClient,
) -> None:
    params: dict[str, Any] = {"week": WEEK, "sal_alpha_mm": 4.0, "sal_n_max": 3}
    text = data.get(URL, params=params | {"format": "html"}).text
    assert "WITHOUT daily imaging" in text and "the margin verdict" in text
    assert "SAL" in text and "eNAL" in text
    table = list(csv.reader(io.StringIO(data.get(URL, params=params | {"format": "csv"}).text)))
    header = table[0]
    sources = {row[header.index("residual_source")] for row in table[1:]}
    assert sources == {"verification", "machine"}
    xlsx = data.get(URL, params=params | {"format": "xlsx"}).content
    workbook = openpyxl.load_workbook(io.BytesIO(xlsx))
    rows = list(workbook["Three parts"].iter_rows(values_only=True))
    assert any(r[0] == "residual" and r[1] == "lateral" for r in rows)
    pdf = data.get(URL, params=params | {"format": "pdf"}).content
    pages = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Set-up error in three parts" in pages
    assert "Offline protocols" in pages


def test_part_b_carries_the_ptv_residual_of_machine_corrected_fractions_with_structures(
    data: TestClient,
) -> None:
    """PB's fractions 1 and 2 (no verification scan): worst PTV max 0.4 and 1.1 mm; fraction 3
    is verified and left out; the courses without structures add nothing."""
    body = data.get(URL, params={"week": WEEK}).json()
    summary = body["part_b_ptv_residual"]
    assert summary["population"] == [
        {
            "group": "PTV",
            "patients": 1,
            "fractions": 2,
            "mean_max_mm": pytest.approx(0.75),
            "p95_max_mm": pytest.approx(0.4 + 0.95 * 0.7),
            "largest_max_mm": pytest.approx(1.1),
        }
    ]
    assert [(p["patient_id"], p["fractions"]) for p in summary["patients"]] == [("PB", 2)]
    assert body["residuals"]["population"][0]["largest_max_mm"] == pytest.approx(5.0)
    html = data.get(URL, params={"week": WEEK, "format": "html"}).text
    assert "(b) Residual at the PTV from the structures" in html
    part_b = html[html.index('id="part-b-ptv"') :]
    assert '<td>PTV</td><td class="num">1</td><td class="num">2</td>' in part_b
    assert '<td class="num">0.8</td>' in part_b and '<td class="num">1.1</td>' in part_b
    pdf = data.get(URL, params={"week": WEEK, "format": "pdf"}).content
    text = " ".join(
        " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages).split()
    )
    assert "(b) Residual at the PTV from the structures" in text
    assert "PTV 1 2 0.8 1.1 1.1" in text and "PB PTV (PTV) 2 0.8 1.1" in text
