"""The three parts and the offline protocols as table rows, shared by every format; the
sections the PDF and the HTML page both show (:func:`report_sections`).

Values come from :attr:`Report.parts` (:func:`registration.stats_parts.three_part_statistics`)
and :attr:`Report.offline` (:func:`registration.stats_offline.offline_protocols`); nothing is
computed here. :func:`part_values` keeps numbers as numbers (XLSX, CSV-like consumers),
:func:`part_cells` formats them (PDF, HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from app.services.reports.model import FractionRow, Report
from app.services.reports.present import (
    DEFINITIONS,
    VERDICT_LABELS,
    WARNING_TABLE_HEADER,
    Definition,
    PopulationRow,
    about_items,
    footer_line,
    fraction_lines,
    headline,
    mm,
    notes,
    patient_cells,
    patient_table_header,
    population_rows,
    summary_line,
    warning_legend,
    warning_rows,
)
from app.services.reports.residuals import ResidualSummary, worst_ptv
from registration.stats_offline import ProtocolOutcome
from registration.stats_parts import ErrorPart, RotationErrors, TranslationErrors

PART_TITLES: Final = {
    "before_correction": "(a) Before correction — the margin WITHOUT daily imaging",
    "residual": "(b) Residual after the daily correction — the margin verdict",
    "adjustment": "(c) Physician adjustments — observer variation",
}

PART_HEADER: Final = (
    "part",
    "axis",
    "unit",
    "patients",
    "patients with SD",
    "M",
    "Σ (plain)",
    "Σ corrected",
    "σ",
    "van Herk 2.5Σc+0.7σ",
    "Stroom 2Σc+0.7σ",
    "van Herk with plain Σ",
    "verdict",
)

OFFLINE_HEADER: Final = (
    "patient_id",
    "course_id",
    "protocol",
    "imaged fractions",
    "corrections",
    "total correction X/Y/Z (mm)",
    "residual mean X/Y/Z (mm)",
    "message",
)

PartValue = str | int | float | None

#: the residuals section, in the words of the HTML page (templates/report.html)
RESIDUALS_TITLE: Final = "What was left at the target and the organs at risk"
RESIDUALS_NOTE: Final = (
    "Per fraction, the largest displacement of a structure's surface after the couch applied the "
    "correction it can apply (mm); the PTV row covers every PTV-type structure (the 50 mm sphere "
    "around the isocentre for a course without one)."
)
RESIDUALS_POPULATION_HEADER: Final = (
    "Structure", "Patients", "Fractions", "Mean max", "95th percentile", "Largest",
)  # fmt: skip
RESIDUALS_PATIENT_HEADER: Final = ("Patient", "Structure", "Fractions", "Mean max", "Largest")
#: part (b) at the PTV (:func:`app.services.reports.residuals.summarise_part_b_ptv`)
PART_B_PTV_TITLE: Final = (
    "(b) Residual at the PTV from the structures — what the machine could not correct"
)
PART_B_PTV_NOTE: Final = (
    "Per fraction without a verification scan whose course has structures: the largest "
    "displacement of the PTV surface (the worst PTV-type structure, or the 50 mm isocentre sphere) "
    "after the couch applied the correction it can apply, mm; beside the per-axis residual above."
)
#: per fraction, the worst PTV-group structure's residual (appended to the CSV columns)
PTV_RESIDUAL_COLUMNS: Final = (
    "ptv_residual_structure",
    "ptv_residual_max_mm",
    "ptv_residual_p95_mm",
)

_SIX: Final = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")
#: per fraction, what the three parts are made of (see :mod:`registration.stats_parts`)
PART_COLUMNS: Final = (
    *(f"measured_{axis}" for axis in _SIX),
    *(f"residual_{axis}" for axis in _SIX),
    "residual_source",
    *(f"adjustment_{axis}" for axis in _SIX),
)


def part_columns(row: FractionRow) -> dict[str, PartValue]:
    """The fraction's measured 6-DOF correction, residual (and its source) and adjustment."""
    values: dict[str, PartValue] = dict.fromkeys(PART_COLUMNS)
    shifts = row.shifts
    if shifts is None:
        return values
    values.update({f"measured_{k}": v for k, v in shifts.measured.as_dict().items()})
    residual = shifts.residual()
    if residual is not None:
        values.update({f"residual_{k}": v for k, v in residual[0].as_dict().items()})
        values["residual_source"] = residual[1].value
    adjustment = shifts.adjustment()
    if adjustment is not None:
        values.update({f"adjustment_{k}": v for k, v in adjustment.as_dict().items()})
    return values


def _translation(part: str, axis: str, e: TranslationErrors) -> list[PartValue]:
    return [
        part,
        axis,
        "mm",
        e.n_patients,
        e.n_patients_with_sd,
        e.mean_mm,
        e.systematic_sd_mm,
        e.systematic_sd_corrected_mm,
        e.random_rms_mm,
        e.van_herk_margin_mm,
        e.stroom_margin_mm,
        e.van_herk_margin_plain_mm,
        None if e.verdict is None else VERDICT_LABELS[e.verdict],
    ]


def _rotation(part: str, axis: str, e: RotationErrors) -> list[PartValue]:
    values: list[PartValue] = [part, axis, "deg", e.n_patients, e.n_patients_with_sd]
    values += [e.mean_deg, e.systematic_sd_deg, e.systematic_sd_corrected_deg, e.random_rms_deg]
    return [*values, None, None, None, None]


def _part_values(part: ErrorPart) -> list[list[PartValue]]:
    name = part.kind.value
    return [
        _translation(name, "lateral", part.lateral),
        _translation(name, "longitudinal", part.longitudinal),
        _translation(name, "vertical", part.vertical),
        _rotation(name, "pitch", part.pitch),
        _rotation(name, "roll", part.roll),
        _rotation(name, "yaw", part.yaw),
    ]


def parts_of(report: Report) -> list[ErrorPart]:
    p = report.parts
    return [] if p is None else [p.before_correction, p.residual, p.adjustment]


def part_values(report: Report) -> list[list[PartValue]]:
    """Rows of :data:`PART_HEADER`, numbers as numbers (None: undefined)."""
    return [row for part in parts_of(report) for row in _part_values(part)]


def part_cells(part: ErrorPart) -> list[list[str]]:
    """One part's rows formatted (``—`` where undefined), without the part column."""
    return [
        ["" if v is None else (mm(v) if isinstance(v, float) else str(v)) for v in row[1:]]
        for row in _part_values(part)
    ]


def part_notes(report: Report) -> list[str]:
    p = report.parts
    if p is None:
        return []
    return [
        f"Margin in use: {p.margin_in_use_mm:g} mm. Residual from verification scans in "
        f"{p.n_residual_from_verification} fraction(s), from what the machine could not correct "
        f"in {p.n_residual_from_machine}; {p.n_without_residual} without a residual; "
        f"{p.n_adjusted_fractions} adjusted by the physician.",
        *dict.fromkeys(note for part in parts_of(report) for note in part.notes),
    ]


def _triple(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:+.2f}" for v in values)


def offline_cells(outcome: ProtocolOutcome) -> list[str]:
    return [
        outcome.patient_id,
        outcome.course_id,
        outcome.protocol.value.upper() if outcome.protocol.value != "enal" else "eNAL",
        ", ".join(str(n) for n in outcome.imaged_fractions),
        str(len(outcome.corrections)),
        _triple(outcome.total_mm),
        _triple(outcome.residual_mean_mm),
        outcome.message,
    ]


def offline_rows(report: Report) -> list[list[str]]:
    return [offline_cells(o) for o in report.offline]


OFFLINE_NOTE: Final = (
    "Offline protocols for courses without daily imaging, computed on each course's measured "
    "corrections: NAL (de Boer & Heijmen, IJROBP 2001;50:1350), eNAL (IJROBP 2007;67:1586), "
    "SAL (Bel et al., Radiother Oncol 1993;29:253) when its α and N_max are given. 'residual "
    "mean' is the systematic error the protocol would have left."
)


def ptv_residual_values(row: FractionRow) -> tuple[str | None, float | None, float | None]:
    """:data:`PTV_RESIDUAL_COLUMNS` of one fraction; empty without a PTV or isocentre sphere."""
    worst = worst_ptv(row.residuals)
    return (None, None, None) if worst is None else (worst.structure, worst.max_mm, worst.p95_mm)


def _population_cells(summary: ResidualSummary) -> list[list[str]]:
    return [
        [g.group, str(g.patients), str(g.fractions), mm(g.mean_max_mm, 1), mm(g.p95_max_mm, 1),
         mm(g.largest_max_mm, 1)]
        for g in summary.population
    ]  # fmt: skip


def _patient_cells(summary: ResidualSummary) -> list[list[str]]:
    return [
        [p.patient_id, f"{p.structure} ({p.interpreted_type})", str(p.fractions),
         mm(p.mean_max_mm, 1), mm(p.largest_max_mm, 1)]
        for p in summary.patients
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResidualTables:
    """A residuals section: its title and note, the population and the per-patient rows
    (:data:`RESIDUALS_POPULATION_HEADER`, :data:`RESIDUALS_PATIENT_HEADER`); no population
    rows: the section is not shown."""

    title: str
    note: str
    population: list[list[str]]
    patients: list[list[str]]
    population_header: ClassVar[tuple[str, ...]] = RESIDUALS_POPULATION_HEADER
    patient_header: ClassVar[tuple[str, ...]] = RESIDUALS_PATIENT_HEADER


@dataclass(frozen=True, slots=True)
class PartTable:
    """One of the three parts, titled, its rows without the part column (:func:`part_cells`)."""

    kind: str
    title: str
    rows: list[list[str]]


@dataclass(frozen=True, slots=True)
class ReportSections:
    """What the PDF and the HTML page show of a report, in the same words, section by section.

    Each format lays it out its own way; an empty list is a table or a section not shown.
    """

    title: str
    period: str
    headline: str
    summary: str
    population: list[PopulationRow]
    notes: list[str]
    #: (a), (b), (c); none without the parts (hand-made rows)
    parts: list[PartTable]
    part_notes: list[str]
    #: shown after part (b)
    part_b_ptv: ResidualTables
    offline: list[list[str]]
    residuals: ResidualTables
    fraction_lines: list[str]
    warning_legend: str
    warnings: list[list[str]]
    patient_header: list[str]
    patients: list[list[str]]
    about: list[tuple[str, str]]
    footer: str
    part_header: ClassVar[tuple[str, ...]] = PART_HEADER[1:]
    offline_note: ClassVar[str] = OFFLINE_NOTE
    offline_header: ClassVar[tuple[str, ...]] = OFFLINE_HEADER
    warning_header: ClassVar[tuple[str, ...]] = WARNING_TABLE_HEADER
    definitions: ClassVar[tuple[Definition, ...]] = DEFINITIONS


def _residual_tables(title: str, note: str, summary: ResidualSummary) -> ResidualTables:
    """mm to 1 decimal; the patients' structures with the type they were interpreted as."""
    return ResidualTables(title, note, _population_cells(summary), _patient_cells(summary))


def report_sections(report: Report) -> ReportSections:
    """The report's sections as text, for :func:`~app.services.reports.pdf.to_pdf` and
    :func:`~app.services.reports.html_page.to_html`."""
    return ReportSections(
        title=report.context.title,
        period=report.context.period.description,
        headline=headline(report),
        summary=summary_line(report),
        population=population_rows(report),
        notes=notes(report),
        parts=[
            PartTable(p.kind.value, PART_TITLES[p.kind.value], part_cells(p))
            for p in parts_of(report)
        ],
        part_notes=part_notes(report),
        part_b_ptv=_residual_tables(PART_B_PTV_TITLE, PART_B_PTV_NOTE, report.part_b_ptv),
        offline=offline_rows(report),
        residuals=_residual_tables(RESIDUALS_TITLE, RESIDUALS_NOTE, report.residuals),
        fraction_lines=fraction_lines(report),
        warning_legend=warning_legend(report),
        warnings=warning_rows(report),
        patient_header=patient_table_header(report),
        patients=[patient_cells(p) for p in report.statistics.patients],
        about=about_items(report),
        footer=footer_line(report),
    )
