"""The weekly report's residuals: per patient and structure, and over the population for the PTV
and each organ at risk, from the counted fractions only."""

from __future__ import annotations

import csv
import dataclasses
import io

import numpy as np
import openpyxl
import pypdf
import pytest
from test_reports import context, row

from app.services.reports import build_report, to_csv, to_html, to_pdf, to_xlsx
from app.services.reports.export import report_json
from app.services.reports.residuals import StructureResidualRow


def residuals(
    ptv_mm: float, cord_mm: float, ptv_name: str = "PTV"
) -> tuple[StructureResidualRow, ...]:
    return (
        StructureResidualRow("BODY", "EXTERNAL", 9.0, 8.0),
        StructureResidualRow(ptv_name, "PTV", ptv_mm, ptv_mm / 2),
        StructureResidualRow("SpinalCord", "ORGAN", cord_mm, cord_mm / 2),
    )


def test_the_report_summarises_the_ptv_and_each_organ_over_counted_fractions() -> None:
    ptv = {"P1": [0.4, 1.2, 0.8], "P2": [2.1, 0.3]}
    cord = {"P1": [0.2, 0.6, 0.5], "P2": [3.4, 0.1]}
    rows = [
        row(p, i + 1, 1.0, residuals=residuals(ptv[p][i], cord[p][i], f"PTV_{p}"))
        for p in ptv
        for i in range(len(ptv[p]))
    ]
    rejected = row("P2", 3, 1.0, decision="rejected", residuals=residuals(9.9, 9.9))
    report = build_report([*rows, rejected], context())
    population = {g.group: g for g in report.residuals.population}
    assert list(population) == ["PTV", "spinalcord"]  # the PTV first; no EXTERNAL row
    all_ptv = [v for values in ptv.values() for v in values]
    assert population["PTV"].fractions == 5 and population["PTV"].patients == 2
    assert population["PTV"].mean_max_mm == pytest.approx(np.mean(all_ptv))
    assert population["PTV"].p95_max_mm == pytest.approx(np.percentile(all_ptv, 95))
    assert population["PTV"].largest_max_mm == 2.1  # the rejected fraction's 9.9 is left out
    assert population["spinalcord"].largest_max_mm == 3.4
    p2_cord = next(
        p for p in report.residuals.patients if p.patient_id == "P2" and p.structure == "SpinalCord"
    )
    assert p2_cord.fractions == 2 and p2_cord.mean_max_mm == pytest.approx(1.75)
    page = to_html(report)
    assert "What was left at the target and the organs at risk" in page and "3.4" in page
    assert "the PTV row covers every PTV-type structure" in page
    assert '<td>P2</td><td>SpinalCord (ORGAN)</td><td class="num">2</td>' in page
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(report)))["Residuals"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:3] == ("patient_id", "structure", "type")
    assert values[-2][:2] == ("(population)", "PTV")


def test_a_report_without_structures_has_no_residual_section() -> None:
    report = build_report([dataclasses.replace(row("P1", 1, 1.0))], context())
    assert report.residuals.population == ()
    assert "What was left at the target" not in to_html(report)


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def test_the_pdf_shows_the_residual_tables_in_the_html_words_and_numbers() -> None:
    rows = [
        row("P1", 1, 1.0, residuals=residuals(0.4, 0.2)),
        row("P1", 2, 1.0, residuals=residuals(1.2, 0.6)),
        row("P2", 1, 1.0, residuals=residuals(3.9, 1.7, "PTV_boost")),
    ]
    report = build_report(rows, context())
    text = " ".join(pdf_text(to_pdf(report)).split())
    assert "What was left at the target and the organs at risk" in text
    assert "the PTV row covers every PTV-type structure" in text
    assert "Structure Patients Fractions Mean max 95th percentile Largest" in text
    # PTV over 3 fractions: mean 1.83, 95th percentile (linear) 3.63, largest 3.9
    assert "PTV 2 3 1.8 3.6 3.9" in text
    assert "spinalcord 2 3 0.8 1.6 1.7" in text  # cord: mean 0.83, p95 1.59, largest 1.7
    assert "P1 PTV (PTV) 2 0.8 1.2" in text and "P2 PTV_boost (PTV) 1 3.9 3.9" in text
    assert "BODY (EXTERNAL)" in text  # per patient every structure, as on the HTML page


def test_a_pdf_without_structures_has_no_residual_section() -> None:
    report = build_report([row("P1", 1, 1.0)], context())
    assert "What was left at the target" not in pdf_text(to_pdf(report))


def test_the_csv_ends_each_fraction_with_its_worst_ptv_residual_max_and_p95() -> None:
    two_ptvs = (
        *residuals(1.4, 0.2),
        StructureResidualRow("PTV_boost", "PTV", 2.6, 1.1),
    )
    rows = [
        row("P1", 1, 1.0, residuals=two_ptvs),
        row("P1", 2, 1.0, residuals=residuals(0.8, 5.0)),
        row("P2", 1, 1.0),
    ]
    records = list(csv.DictReader(io.StringIO(to_csv(build_report(rows, context())).decode())))
    assert list(records[0])[-3:] == [
        "ptv_residual_structure", "ptv_residual_max_mm", "ptv_residual_p95_mm",
    ]  # fmt: skip
    got = {
        (r["patient_id"], r["fraction_number"]): (
            r["ptv_residual_structure"], r["ptv_residual_max_mm"], r["ptv_residual_p95_mm"],
        )
        for r in records
    }  # fmt: skip
    assert got[("P1", "1")] == ("PTV_boost", "2.6", "1.1")  # the worse of two PTVs
    assert got[("P1", "2")] == ("PTV", "0.8", "0.4")  # the cord's 5.0 is not the PTV
    assert got[("P2", "1")] == ("", "", "")  # no structure set: empty, not zero


def test_the_json_carries_the_summary_and_each_fractions_structures() -> None:
    rows = [row("P1", 1, 1.0, residuals=residuals(0.4, 0.2)), row("P1", 2, 1.0)]
    body = report_json(build_report(rows, context()))
    assert body["residuals"]["population"][0] == {
        "group": "PTV", "patients": 1, "fractions": 1, "mean_max_mm": 0.4, "p95_max_mm": 0.4,
        "largest_max_mm": 0.4,
    }  # fmt: skip
    first, second = sorted(body["rows"], key=lambda r: r["fraction_number"])
    assert first["residuals"][1] == {
        "structure": "PTV", "interpreted_type": "PTV", "max_mm": 0.4, "p95_mm": 0.2,
    }  # fmt: skip
    assert second["residuals"] == []
