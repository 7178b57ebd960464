"""Report data and tabular exports: periods, build checks, CSV and XLSX.

Expected statistics are computed here with numpy from the raw shifts (mean, ``ddof=1`` SD, root
mean square), never read back from :mod:`registration.stats`. PDF and HTML are tested in
``test_reports_documents.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import doctest
import io
import math
import types

import numpy as np
import openpyxl
import pytest
from report_data import WORKBOOK_SHEETS

import app.services.reports
import app.services.reports.model
import app.services.reports.tabular
from app.services.reports import (
    CSV_COLUMNS,
    FractionRow,
    ReportContext,
    ReportInputError,
    ReportPeriod,
    build_report,
    to_csv,
    to_xlsx,
)
from registration.stats import MarginVerdict, ShiftSource

WEEK = ReportPeriod.iso_week("2026-W48")  # Monday 23 to Sunday 29 November 2026
GENERATED_AT = datetime.datetime(2026, 11, 30, 7, 0, tzinfo=datetime.UTC)

# A hand-made week: three patients (courses), fraction i on 23 Nov + (i - 1) days.
LATERAL_MM = {"P1": [1.0, 2.0, 3.0], "P2": [3.0, 5.0, 7.0], "P3": [-4.0, 0.0, 0.0, 0.0]}
LONGITUDINAL_MM = {"P1": [0.5, 1.5, 1.0], "P2": [-2.0, -1.0, -3.0], "P3": [1.0, 1.0, 2.0, 4.0]}
VERTICAL_MM = {"P1": [0.0, 0.0, 0.6], "P2": [1.0, 1.0, 1.0], "P3": [-1.0, -2.0, -1.0, -2.0]}


def row(patient_id: str, fraction_number: int, lateral_mm: float, **changes: object) -> FractionRow:
    """A trusted, approved fraction of course C1 in :data:`WEEK`; ``changes`` override fields."""
    day = WEEK.start + datetime.timedelta(days=fraction_number - 1)
    acquired = datetime.datetime.combine(day, datetime.time(8, 0), datetime.UTC)
    base = FractionRow(
        patient_id=patient_id,
        course_id="C1",
        site="head and neck",
        fraction_number=fraction_number,
        fraction_date=day,
        acquired_at=acquired,
        lateral_mm=lateral_mm,
        longitudinal_mm=0.0,
        vertical_mm=0.0,
        pitch_deg=0.0,
        roll_deg=0.0,
        yaw_deg=0.0,
        trusted=True,
        decision="approved",
        signed_by="Dr Signer",
        signed_at=acquired + datetime.timedelta(minutes=5),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def hand_made_rows() -> list[FractionRow]:
    return [
        row(p, i + 1, lat, longitudinal_mm=LONGITUDINAL_MM[p][i], vertical_mm=VERTICAL_MM[p][i])
        for p, lateral in LATERAL_MM.items()
        for i, lat in enumerate(lateral)
    ]


def context(**changes: object) -> ReportContext:
    base = ReportContext(period=WEEK, generated_at=GENERATED_AT, generated_by="A. Physicist")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def expected_population(shifts: dict[str, list[float]]) -> tuple[float, float, float]:
    """(M, Σ, σ) by the textbook definitions, independently of the code under test."""
    means = np.array([np.mean(v) for v in shifts.values()])
    sds = np.array([np.std(v, ddof=1) for v in shifts.values()])
    return float(means.mean()), float(np.std(means, ddof=1)), float(np.sqrt(np.mean(sds**2)))


def test_the_module_docstring_examples_run() -> None:
    for module in (app.services.reports, app.services.reports.model, app.services.reports.tabular):
        assert isinstance(module, types.ModuleType)
        failures, tried = doctest.testmod(module)
        assert tried > 0 and failures == 0, module.__name__


# --- periods and context -----------------------------------------------------------------------


def test_an_iso_week_runs_monday_to_sunday_and_is_described_with_its_dates() -> None:
    assert (WEEK.start, WEEK.end) == (datetime.date(2026, 11, 23), datetime.date(2026, 11, 29))
    assert WEEK.description == "2026-W48 (23–29 Nov 2026)"
    assert ReportPeriod.iso_week("2026-W53").end == datetime.date(2027, 1, 3)


@pytest.mark.parametrize("week", ["2025-W53", "2026-48", "2026-W00", "W48", "2026-W4"])
def test_a_malformed_or_missing_iso_week_is_refused_with_the_expected_form(week: str) -> None:
    with pytest.raises(ReportInputError, match="YYYY-Www"):
        ReportPeriod.iso_week(week)


def test_ranges_across_months_and_years_and_cumulative_views_are_described_in_words() -> None:
    across_months = ReportPeriod.between(datetime.date(2026, 11, 28), datetime.date(2026, 12, 4))
    across_years = ReportPeriod.between(datetime.date(2026, 12, 28), datetime.date(2027, 1, 3))
    since = ReportPeriod.since(datetime.date(2026, 9, 1), datetime.date(2026, 11, 29))
    assert across_months.description == "28 Nov – 4 Dec 2026"
    assert across_years.description == "28 Dec 2026 – 3 Jan 2027"
    assert since.description == "since 2026-09-01 (1 Sep – 29 Nov 2026)"
    with pytest.raises(ReportInputError, match="before it starts"):
        ReportPeriod.between(datetime.date(2026, 12, 4), datetime.date(2026, 11, 28))


def test_naive_datetimes_and_unknown_decisions_are_refused() -> None:
    with pytest.raises(ReportInputError, match="acquired_at"):
        row("P1", 1, 0.0, acquired_at=datetime.datetime(2026, 11, 23, 8, 0))
    with pytest.raises(ReportInputError, match="approved_adjusted"):
        row("P1", 1, 0.0, decision="ok")
    with pytest.raises(ReportInputError, match="generated_at"):
        context(generated_at=datetime.datetime(2026, 11, 30, 7, 0))


# --- build_report ------------------------------------------------------------------------------


def test_build_report_refuses_rows_outside_the_period_or_of_another_site() -> None:
    late = row("P1", 8, 1.0)  # 30 Nov: the Monday after the week
    with pytest.raises(ReportInputError, match="2026-11-30, outside the report period"):
        build_report([late], context())
    with pytest.raises(ReportInputError, match="site 'prostate'"):
        build_report([row("P1", 1, 1.0, site="prostate")], context(site="head and neck"))


def test_build_report_refuses_two_shifts_for_one_fraction() -> None:
    with pytest.raises(ReportInputError, match="more than one shift for fraction 1"):
        build_report([row("P1", 1, 1.0), row("P1", 1, 2.0)], context())


def test_build_report_sorts_rows_and_computes_vectors_and_population_values() -> None:
    rows = hand_made_rows()
    report = build_report(list(reversed(rows)), context(margin_in_use_mm=5.0))
    assert [(r.patient_id, r.fraction_number) for r in report.rows] == [
        (r.patient_id, r.fraction_number) for r in rows
    ]
    for r, vector_mm in zip(report.rows, report.vectors_mm, strict=True):
        assert vector_mm == pytest.approx(
            math.sqrt(r.lateral_mm**2 + r.longitudinal_mm**2 + r.vertical_mm**2)
        )
    m, big_sigma, small_sigma = expected_population(LATERAL_MM)
    lateral = report.statistics.population.lateral
    assert (lateral.mean_mm, lateral.systematic_sd_mm, lateral.random_rms_mm) == pytest.approx(
        (m, big_sigma, small_sigma)
    )
    assert lateral.margin_in_use_mm == 5.0
    assert lateral.verdict is MarginVerdict.TOO_FEW_PATIENTS


def test_the_same_rows_give_the_same_bootstrap_intervals() -> None:
    first = build_report(hand_made_rows(), context())
    second = build_report(hand_made_rows(), context())
    interval = first.statistics.population.lateral.van_herk_interval
    assert interval is not None
    assert interval == second.statistics.population.lateral.van_herk_interval


# --- CSV ---------------------------------------------------------------------------------------


SIX = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_the_csv_header_carries_units_and_there_is_one_row_per_fraction() -> None:
    data = to_csv(build_report(hand_made_rows(), context()))
    table = read_csv(data)
    assert table[0] == [
        "patient_id", "course_id", "site", "fraction_number", "date", "lateral_mm",
        "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg", "vector_mm",
        "trusted", "decision", "signed_by", "signed_at",
        *(f"measured_{a}" for a in SIX), *(f"residual_{a}" for a in SIX), "residual_source",
        *(f"adjustment_{a}" for a in SIX),
        "ptv_residual_structure", "ptv_residual_max_mm", "ptv_residual_p95_mm",
    ]  # fmt: skip
    assert len(table) - 1 == sum(len(v) for v in LATERAL_MM.values())
    assert data.count(b"\r\n") == len(table)  # RFC 4180 line ends


def test_csv_values_round_trip_through_a_csv_reader() -> None:
    awkward = row(
        'P "4", x',
        1,
        -1.25,
        longitudinal_mm=0.3,
        vertical_mm=2.0,
        roll_deg=-0.5,
        pitch_deg=0.25,
        yaw_deg=-0.75,
        site=None,
        trusted=False,
        decision=None,
        signed_by=None,
        signed_at=None,
    )
    adjusted = row("P5", 2, 0.1, decision="approved_adjusted", signed_by="Dr Ünal")
    report = build_report([awkward, adjusted], context())
    records = list(csv.DictReader(io.StringIO(to_csv(report).decode("utf-8"), newline="")))
    first, second = records
    assert first["patient_id"] == 'P "4", x'
    assert first["site"] == "" and first["signed_by"] == "" and first["signed_at"] == ""
    assert int(first["fraction_number"]) == 1
    assert datetime.date.fromisoformat(first["date"]) == awkward.fraction_date
    shifts = ["lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg"]
    assert [float(first[c]) for c in shifts] == [-1.25, 0.3, 2.0, 0.25, -0.5, -0.75]
    assert float(first["vector_mm"]) == pytest.approx(math.hypot(1.25, 0.3, 2.0), abs=1e-4)
    assert (first["trusted"], first["decision"]) == ("false", "awaiting")
    assert (second["decision"], second["signed_by"]) == ("approved_adjusted", "Dr Ünal")
    assert adjusted.signed_at is not None
    assert datetime.datetime.fromisoformat(second["signed_at"]) == adjusted.signed_at
    assert second["signed_at"].endswith("Z")


def test_csv_text_that_looks_like_a_formula_is_neutralised_but_numbers_stay_numbers() -> None:
    rows = [
        row('=HYPERLINK("http://x")', 1, -1.5, signed_by="@SUM(A1)"),
        row("+41 79", 1, 0.0, course_id="-C2"),
        row("P-7", 1, 0.0),
    ]
    records = list(csv.DictReader(io.StringIO(to_csv(build_report(rows, context())).decode())))
    by_id = {r["patient_id"]: r for r in records}
    assert set(by_id) == {'\'=HYPERLINK("http://x")', "'+41 79", "P-7"}
    assert by_id['\'=HYPERLINK("http://x")']["signed_by"] == "'@SUM(A1)"
    assert by_id['\'=HYPERLINK("http://x")']["lateral_mm"] == "-1.5"
    assert by_id["'+41 79"]["course_id"] == "'-C2"


def test_an_empty_csv_is_the_header_alone() -> None:
    table = read_csv(to_csv(build_report([], context())))
    assert table == [list(CSV_COLUMNS)]


# --- XLSX --------------------------------------------------------------------------------------


def load(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def population_row(workbook: openpyxl.Workbook, axis: str) -> dict[str, object]:
    """The Population sheet's row for ``axis``, keyed by the header of its table."""
    rows = list(workbook["Population"].iter_rows(values_only=True))
    header_index = next(i for i, r in enumerate(rows) if r[0] == "axis")
    values = next(r for r in rows[header_index:] if r[0] == axis)
    return dict(zip(rows[header_index], values, strict=False))


def test_the_workbook_has_the_six_sheets_and_one_fractions_row_per_fraction() -> None:
    workbook = load(to_xlsx(build_report(hand_made_rows(), context())))
    assert workbook.sheetnames == list(WORKBOOK_SHEETS)
    fractions = list(workbook["Fractions"].iter_rows(values_only=True))
    assert list(fractions[0]) == list(CSV_COLUMNS)
    assert len(fractions) - 1 == sum(len(v) for v in LATERAL_MM.values())
    assert len(list(workbook["Patients"].iter_rows())) - 1 == len(LATERAL_MM)


def test_the_population_sheet_holds_m_sigma_and_the_van_herk_margin_of_a_known_data_set() -> None:
    workbook = load(to_xlsx(build_report(hand_made_rows(), context())))
    for axis, shifts in (("Lateral (X)", LATERAL_MM), ("Longitudinal (Y)", LONGITUDINAL_MM)):
        m, big_sigma, small_sigma = expected_population(shifts)
        values = population_row(workbook, axis)
        assert values["M, mean of m_p (mm)"] == pytest.approx(m)
        assert values["Σ, SD of m_p (mm)"] == pytest.approx(big_sigma)
        assert values["σ, RMS of s_p (mm)"] == pytest.approx(small_sigma)
        assert values["van Herk 2.5Σ + 0.7σ (mm)"] == pytest.approx(
            2.5 * big_sigma + 0.7 * small_sigma
        )
        assert values["verdict"] == "too few patients (< 10)"


def test_the_patients_sheet_holds_each_patients_systematic_and_random_error() -> None:
    workbook = load(to_xlsx(build_report(hand_made_rows(), context())))
    rows = list(workbook["Patients"].iter_rows(values_only=True))
    header = rows[0]
    p2 = dict(zip(header, next(r for r in rows if r[0] == "P2"), strict=True))
    assert p2["lateral mean, systematic m_p (mm)"] == pytest.approx(np.mean(LATERAL_MM["P2"]))
    assert p2["lateral SD, random s_p (mm)"] == pytest.approx(np.std(LATERAL_MM["P2"], ddof=1))
    assert p2["lateral fractions > 5 mm (n)"] == 1  # 7 mm; 5 mm itself is not beyond
    physical = [h for h in header if isinstance(h, str) and h.startswith(("lateral", "roll"))]
    assert physical and all(h.endswith(("(mm)", "(deg)", "(n)")) for h in physical)


def test_workbook_text_is_stored_as_text_never_as_a_formula() -> None:
    rows = [row("=1+2", 1, 1.0, signed_by="=cmd|' /C calc'!A0")]
    sheet = load(to_xlsx(build_report(rows, context())))["Fractions"]
    patient, signer = sheet["A2"], sheet["O2"]
    assert (patient.value, patient.data_type) == ("=1+2", "s")
    assert (signer.value, signer.data_type) == ("=cmd|' /C calc'!A0", "s")
    assert sheet["F2"].value == 1.0 and sheet["F2"].data_type == "n"


def test_the_warnings_sheet_lists_a_no_action_level_warning() -> None:
    workbook = load(to_xlsx(build_report(hand_made_rows(), context())))
    rows = list(workbook["Warnings"].iter_rows(values_only=True))
    # P2's first three lateral shifts average (3 + 5 + 7) / 3 = 5 mm, beyond 2 mm
    nal = [r for r in rows[1:] if r[0] == "P2" and r[3] == "lateral"]
    assert len(nal) == 1 and nal[0][4] == pytest.approx(5.0) and "P2" in str(nal[0][7])


def test_an_empty_workbook_keeps_its_sheets_and_says_there_were_no_fractions() -> None:
    workbook = load(to_xlsx(build_report([], context(shift_source=ShiftSource.RESIDUAL))))
    assert workbook.sheetnames == list(WORKBOOK_SHEETS)
    assert len(list(workbook["Fractions"].iter_rows())) == 1
    about = [c for r in workbook["About"].iter_rows(values_only=True) for c in r if c]
    assert "No fractions in 2026-W48 (23–29 Nov 2026)." in about
    assert any(str(c).startswith("residual:") for c in about)
    assert population_row(workbook, "Lateral (X)")["verdict"] == "too few patients (< 10)"
