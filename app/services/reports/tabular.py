"""CSV export, and the fractions as typed values (the CSV rows and the XLSX "Fractions" sheet).

Text that a spreadsheet could run as a formula is neutralised: in CSV a text cell starting with
``= + - @``, tab or carriage return gets a leading apostrophe (OWASP "CSV injection"); numbers
are written as numbers, so a shift of ``-1.2`` stays ``-1.2``. The XLSX export is
:mod:`app.services.reports.xlsx`.
"""

from __future__ import annotations

import csv
import datetime
import io
from typing import Final

from app.services.reports.model import AWAITING, Report
from app.services.reports.present_parts import (
    PART_COLUMNS,
    PTV_RESIDUAL_COLUMNS,
    part_columns,
    ptv_residual_values,
)

#: the CSV header (and the XLSX "Fractions" header), units in the names
CSV_COLUMNS: Final = (
    "patient_id",
    "course_id",
    "site",
    "fraction_number",
    "date",
    "lateral_mm",
    "longitudinal_mm",
    "vertical_mm",
    "pitch_deg",
    "roll_deg",
    "yaw_deg",
    "vector_mm",
    "trusted",
    "decision",
    "signed_by",
    "signed_at",
    *PART_COLUMNS,
    *PTV_RESIDUAL_COLUMNS,
)
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
_CSV_DECIMALS: Final = 4  # 0.1 µm: lossless for any shift a console reports

CellValue = str | int | float | bool | datetime.date | datetime.datetime | None


def neutralise_formula(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet would read as a formula.

    >>> neutralise_formula("=HYPERLINK(1)"), neutralise_formula("P-001")
    ("'=HYPERLINK(1)", 'P-001')
    """
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def fraction_values(report: Report) -> list[tuple[CellValue, ...]]:
    """One tuple per fraction in :data:`CSV_COLUMNS` order, typed (signed_at in UTC)."""
    return [
        (
            row.patient_id,
            row.course_id,
            row.site,
            row.fraction_number,
            row.fraction_date,
            row.lateral_mm,
            row.longitudinal_mm,
            row.vertical_mm,
            row.pitch_deg,
            row.roll_deg,
            row.yaw_deg,
            vector_mm,
            row.trusted,
            row.decision if row.decision is not None else AWAITING,
            row.signed_by,
            row.signed_at.astimezone(datetime.UTC) if row.signed_at is not None else None,
            *part_columns(row).values(),
            *ptv_residual_values(row),
        )
        for row, vector_mm in zip(report.rows, report.vectors_mm, strict=True)
    ]


def _csv_cell(value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, _CSV_DECIMALS) + 0.0)  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        return neutralise_formula(value)
    return str(value)


def to_csv(report: Report) -> bytes:
    """One row per fraction, header :data:`CSV_COLUMNS`; UTF-8, RFC 4180 (CRLF, minimal quotes).

    Floats are rounded to 4 decimals, booleans are ``true``/``false``, a missing decision is
    ``awaiting``, ``signed_at`` is ISO 8601 in UTC (``…Z``), missing values are empty. An empty
    report is the header alone. The last columns, ``ptv_residual_*``, name the fraction's
    PTV-group structure with the largest residual and give its max and 95th percentile (mm).
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([_csv_cell(v) for v in values] for values in fraction_values(report))
    return buffer.getvalue().encode("utf-8")
