"""XLSX export: the fractions as data, plus per-patient, population, residual, warning,
three-part, offline-protocol and about sheets.

Every text cell is stored as a string cell, never as a formula; numbers as numbers.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from typing import Final

from openpyxl import Workbook
from openpyxl.cell.cell import Cell as XlCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from app.services.reports.model import Report
from app.services.reports.present import (
    AXIS_LABELS,
    DEFINITIONS,
    VERDICT_LABELS,
    WARNING_KIND_LABELS,
    about_items,
    headline,
    notes,
)
from app.services.reports.present_parts import (
    OFFLINE_HEADER,
    OFFLINE_NOTE,
    PART_HEADER,
    PART_TITLES,
    offline_rows,
    part_notes,
    part_values,
)
from app.services.reports.tabular import CSV_COLUMNS, CellValue, fraction_values
from registration.stats import MarginVerdict, PatientStatistics, PopulationTranslationStats

_MM_FORMAT: Final = "0.00"
_UTC_FORMAT: Final = 'yyyy-mm-dd hh:mm:ss "UTC"'
_DATE_FORMAT: Final = "yyyy-mm-dd"
_BOLD: Final = Font(bold=True)
_RED_BOLD: Final = Font(bold=True, color="C00000")


def _append(
    sheet: Worksheet, values: Sequence[CellValue], font: Font | None = None
) -> list[XlCell]:
    """Append a row and return its cells; text stays text (never a formula)."""
    cells = []
    for value in values:
        plain = value.replace(tzinfo=None) if isinstance(value, datetime.datetime) else value
        cell = XlCell(sheet, value=plain)
        if isinstance(plain, str):
            cell.data_type = "s"
        elif isinstance(plain, float):
            cell.number_format = _MM_FORMAT
        elif isinstance(plain, datetime.datetime):
            cell.number_format = _UTC_FORMAT
        elif isinstance(plain, datetime.date):
            cell.number_format = _DATE_FORMAT
        if font is not None:
            cell.font = font
        cells.append(cell)
    sheet.append(cells)
    return cells


def _widths(sheet: Worksheet, widths: Sequence[int]) -> None:
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width


def _header(sheet: Worksheet, names: Sequence[str]) -> None:
    for cell in _append(sheet, names, _BOLD):
        cell.alignment = Alignment(wrap_text=True, vertical="top")


def _fractions_sheet(sheet: Worksheet, report: Report) -> None:
    _header(sheet, CSV_COLUMNS)
    for values in fraction_values(report):
        _append(sheet, values)
    sheet.freeze_panes = "A2"
    _widths(sheet, [14, 10, 16, 9, 12] + [11] * 7 + [8, 17, 14, 22])


_AXES: Final = ("lateral", "longitudinal", "vertical")


def _patients_header(margin_in_use_mm: float) -> list[str]:
    names = ["patient_id", "course_id", "fractions (n)", "first date", "last date"]
    for axis in _AXES:
        names += [
            f"{axis} mean, systematic m_p (mm)",
            f"{axis} SD, random s_p (mm)",
            f"{axis} max |shift| (mm)",
            f"{axis} fractions > {margin_in_use_mm:g} mm margin (n)",
            f"{axis} fractions > 5 mm (n)",
        ]
    names += [
        "roll mean, systematic m_p (deg)",
        "roll SD, random s_p (deg)",
        "roll max |shift| (deg)",
        "3D vector mean (mm)",
        "3D vector max (mm)",
    ]
    return names


def _patient_values(patient: PatientStatistics) -> list[CellValue]:
    values: list[CellValue] = [
        patient.patient_id,
        patient.course_id,
        patient.n_fractions,
        patient.first_date,
        patient.last_date,
    ]
    for axis in (patient.lateral, patient.longitudinal, patient.vertical):
        values += [axis.mean_mm, axis.sd_mm, axis.max_abs_mm, axis.n_beyond_margin]
        values.append(axis.n_beyond_5mm)
    roll = patient.roll
    values += [roll.mean_deg, roll.sd_deg, roll.max_abs_deg]
    return [*values, patient.vector_mean_mm, patient.vector_max_mm]


def _patients_sheet(sheet: Worksheet, report: Report) -> None:
    _header(sheet, _patients_header(report.context.margin_in_use_mm))
    for patient in report.statistics.patients:
        _append(sheet, _patient_values(patient))
    sheet.freeze_panes = "C2"
    _widths(sheet, [14, 10, 10, 12, 12] + [13] * 20)


_POPULATION_HEADER: Final = (
    "axis",
    "patients (n)",
    "patients with ≥ 2 fractions (n)",
    "M, mean of m_p (mm)",
    "Σ, SD of m_p (mm)",
    "σ, RMS of s_p (mm)",
    "van Herk 2.5Σ + 0.7σ (mm)",
    "van Herk 95 % CI low (mm)",
    "van Herk 95 % CI high (mm)",
    "Stroom 2Σ + 0.7σ (mm)",
    "Stroom 95 % CI low (mm)",
    "Stroom 95 % CI high (mm)",
    "margin in use (mm)",
    "verdict",
    "note",
)

_ROLL_HEADER: Final = (
    "axis",
    "patients (n)",
    "patients with ≥ 2 fractions (n)",
    "M, mean of m_p (deg)",
    "Σ, SD of m_p (deg)",
    "σ, RMS of s_p (deg)",
)


def _population_values(axis: str, pop: PopulationTranslationStats) -> list[CellValue]:
    vh, st = pop.van_herk_interval, pop.stroom_interval
    return [
        AXIS_LABELS[axis],
        pop.n_patients,
        pop.n_patients_with_sd,
        pop.mean_mm,
        pop.systematic_sd_mm,
        pop.random_rms_mm,
        pop.van_herk_margin_mm,
        vh.low_mm if vh else None,
        vh.high_mm if vh else None,
        pop.stroom_margin_mm,
        st.low_mm if st else None,
        st.high_mm if st else None,
        pop.margin_in_use_mm,
        VERDICT_LABELS[pop.verdict],
        pop.note,
    ]


def _population_sheet(sheet: Worksheet, report: Report) -> None:
    stats = report.statistics
    _append(sheet, [report.context.title], Font(bold=True, size=14))
    _append(sheet, [headline(report)])
    _append(sheet, [])
    _header(sheet, _POPULATION_HEADER)
    pop = stats.population
    for axis, values in zip(_AXES, (pop.lateral, pop.longitudinal, pop.vertical), strict=True):
        cells = _append(sheet, _population_values(axis, values))
        if values.verdict is MarginVerdict.NOT_ADEQUATE:
            cells[_POPULATION_HEADER.index("verdict")].font = _RED_BOLD
    _append(sheet, [])
    _header(sheet, _ROLL_HEADER)
    roll = pop.roll
    roll_values = [roll.mean_deg, roll.systematic_sd_deg, roll.random_rms_deg]
    _append(sheet, [AXIS_LABELS["roll"], roll.n_patients, roll.n_patients_with_sd, *roll_values])
    _append(sheet, [])
    _header(sheet, ["fractions", "value", "unit"])
    f = stats.fractions
    fraction_quantities: tuple[tuple[str, CellValue, str], ...] = (
        ("fractions", f.n_fractions, "count"),
        ("fractions with any translation axis ≥ 3 mm", f.n_any_axis_at_least_3mm, "count"),
        ("share of fractions with any axis ≥ 3 mm", f.share_any_axis_at_least_3mm, "%"),
        ("fractions with any translation axis ≥ 5 mm", f.n_any_axis_at_least_5mm, "count"),
        ("share of fractions with any axis ≥ 5 mm", f.share_any_axis_at_least_5mm, "%"),
        ("3D vector mean", f.vector_mean_mm, "mm"),
        ("3D vector median", f.vector_median_mm, "mm"),
        ("3D vector max", f.vector_max_mm, "mm"),
    )
    for quantity in fraction_quantities:
        cells = _append(sheet, quantity)
        if quantity[2] == "%":
            cells[1].number_format = "0.0%"
    _widths(sheet, [44, 10, 14] + [12] * 10 + [22, 90])


_WARNINGS_HEADER: Final = (
    "patient_id",
    "course_id",
    "check",
    "axis",
    "mean shift (mm)",
    "threshold (mm)",
    "fractions in the mean (n)",
    "message",
)


def _warnings_sheet(sheet: Worksheet, report: Report) -> None:
    _header(sheet, _WARNINGS_HEADER)
    for w in report.statistics.warnings:
        kind = WARNING_KIND_LABELS[w.kind]
        values: list[CellValue] = [w.patient_id, w.course_id, kind, str(w.axis)]
        _append(sheet, [*values, w.value_mm, w.threshold_mm, w.n_fractions, w.message])
    _widths(sheet, [14, 10, 30, 13, 12, 12, 12, 110])


def _parts_sheet(sheet: Worksheet, report: Report) -> None:
    _append(sheet, ["Set-up error in three parts"], Font(bold=True, size=14))
    for kind, title in PART_TITLES.items():
        _append(sheet, [kind, title])
    _append(sheet, [])
    _header(sheet, PART_HEADER)
    for values in part_values(report):
        cells = _append(sheet, values)
        if values[-1] == "not adequate":
            cells[-1].font = _RED_BOLD
    _append(sheet, [])
    for note in part_notes(report):
        _append(sheet, ["", note])
    _widths(sheet, [18, 13, 6] + [11] * 9 + [22])


def _offline_sheet(sheet: Worksheet, report: Report) -> None:
    _append(sheet, [OFFLINE_NOTE])
    _header(sheet, OFFLINE_HEADER)
    for cells in offline_rows(report):
        _append(sheet, cells)
    _widths(sheet, [14, 10, 9, 24, 12, 26, 26, 110])


def _about_sheet(sheet: Worksheet, report: Report) -> None:
    _append(sheet, [report.context.title], Font(bold=True, size=14))
    _append(sheet, [headline(report)])
    _append(sheet, [])
    for label, value in about_items(report):
        _append(sheet, [label, value])[0].font = _BOLD
    _append(sheet, [])
    _append(sheet, ["Notes"], _BOLD)
    for note in notes(report):
        _append(sheet, ["", note])
    _append(sheet, [])
    _header(sheet, ["definition", "meaning", "source"])
    for d in DEFINITIONS:
        _append(sheet, [d.term, d.text, d.source])
    _widths(sheet, [34, 110, 50])


def _residuals_sheet(sheet: Worksheet, report: Report) -> None:
    """Per patient and structure, then per population group: the residual max (mm)."""
    _header(
        sheet,
        ["patient_id", "structure", "type", "fractions", "mean_max_mm", "p95_max_mm", "largest_mm"],
    )
    for p in report.residuals.patients:
        _append(
            sheet,
            [p.patient_id, p.structure, p.interpreted_type, p.fractions, p.mean_max_mm, None,
             p.largest_max_mm],
        )  # fmt: skip
    for g in report.residuals.population:
        _append(
            sheet,
            ["(population)", g.group, f"{g.patients} patients", g.fractions, g.mean_max_mm,
             g.p95_max_mm, g.largest_max_mm],
        )  # fmt: skip
    _widths(sheet, [14, 22, 14, 10, 12, 12, 12])


def to_xlsx(report: Report) -> bytes:
    """Sheets Fractions, Patients, Population, Residuals, Warnings, Three parts, Offline
    protocols, About (see the module docstring).

    Numbers are stored at full precision and displayed with 2 decimals; dates are Excel dates,
    ``signed_at`` is an Excel date-time in UTC. An empty report keeps every sheet and header.
    """
    workbook = Workbook()
    fractions = workbook.active
    assert fractions is not None  # a new Workbook always has one sheet
    fractions.title = "Fractions"
    _fractions_sheet(fractions, report)
    _patients_sheet(workbook.create_sheet("Patients"), report)
    _population_sheet(workbook.create_sheet("Population"), report)
    _residuals_sheet(workbook.create_sheet("Residuals"), report)
    _warnings_sheet(workbook.create_sheet("Warnings"), report)
    _parts_sheet(workbook.create_sheet("Three parts"), report)
    _offline_sheet(workbook.create_sheet("Offline protocols"), report)
    _about_sheet(workbook.create_sheet("About"), report)
    generated = report.context.generated_at_utc.replace(tzinfo=None)
    workbook.properties.title = f"{report.context.title}, {report.context.period.description}"
    workbook.properties.creator = report.context.generated_by
    workbook.properties.created = generated
    workbook.properties.modified = generated
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
