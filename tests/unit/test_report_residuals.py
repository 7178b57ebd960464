"""The weekly report's residuals: per patient and structure, and over the population for the PTV
and each organ at risk, from the counted fractions only."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import openpyxl
import pytest
from test_reports import context, row

from app.services.reports import build_report, to_html, to_xlsx
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
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(report)))["Residuals"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:3] == ("patient_id", "structure", "type")
    assert values[-2][:2] == ("(population)", "PTV")


def test_a_report_without_structures_has_no_residual_section() -> None:
    report = build_report([dataclasses.replace(row("P1", 1, 1.0))], context())
    assert report.residuals.population == ()
    assert "What was left at the target" not in to_html(report)
