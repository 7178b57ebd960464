"""Words and formatted numbers shared by every format, so the PDF, HTML and XLSX say the same.

Nothing here computes a statistic: values come from the report's
:class:`~registration.stats.ShiftStatistics` and are only formatted (``—`` where undefined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.services.reports.model import Report
from registration.stats import (
    CONFIDENCE_LEVEL,
    MIN_PATIENTS_FOR_VERDICT,
    MarginIntervalMm,
    MarginVerdict,
    PatientStatistics,
    PopulationTranslationStats,
    ShiftSource,
    WarningKind,
)
from registration.stats_warnings import (
    DEFAULT_NAL_FRACTIONS,
    DEFAULT_NAL_THRESHOLD_MM,
    DEFAULT_RUNNING_THRESHOLD_MM,
)

MISSING: Final = "—"

VERDICT_LABELS: Final = {
    MarginVerdict.ADEQUATE: "adequate",
    MarginVerdict.NOT_ADEQUATE: "not adequate",
    MarginVerdict.TOO_FEW_PATIENTS: f"too few patients (< {MIN_PATIENTS_FOR_VERDICT})",
}

AXIS_LABELS: Final = {
    "lateral": "Lateral (X)",
    "longitudinal": "Longitudinal (Y)",
    "vertical": "Vertical (Z)",
    "roll": "Roll (about Y)",
}

WARNING_KIND_LABELS: Final = {
    WarningKind.NAL: "first fractions (NAL)",
    WarningKind.RUNNING_SYSTEMATIC: "running systematic (weekly check)",
}

SHIFT_SOURCE_TEXT: Final = {
    ShiftSource.REGISTRATION: (
        "registration: the correction the registration proposed (set-up error before image "
        "guidance)"
    ),
    ShiftSource.SIGNED: (
        "signed: the correction the physician signed and the couch applied (set-up error before "
        "image guidance)"
    ),
    ShiftSource.RESIDUAL: (
        "residual: the error measured after the correction (what remains with daily imaging)"
    ),
}


@dataclass(frozen=True, slots=True)
class Definition:
    term: str
    text: str
    source: str


DEFINITIONS: Final = (
    Definition(
        "Axes and units",
        "IEC 61217 table axes: lateral X, longitudinal Y, vertical Z in mm; roll about Y in "
        "degrees. Signs as stored for the chosen shift source. A 'patient' is one treatment "
        "course (its own planning CT, its own systematic error).",
        "IEC 61217",
    ),
    Definition(
        "Systematic error m_p, random error s_p",
        "Per patient and axis: m_p is the mean of the shifts, s_p their sample SD (n − 1); s_p "
        "is undefined for a single fraction.",
        "van Herk, Semin Radiat Oncol 2004;14:52",
    ),
    Definition(
        "M, Σ, σ",
        "Population per axis: M is the mean of m_p, Σ the SD of m_p (n − 1), σ the root mean "
        "square of s_p over patients with 2 or more fractions.",
        "RCR/IPEM/SCoR, On Target, 2008",
    ),
    Definition(
        "van Herk margin 2.5Σ + 0.7σ",
        "CTV→PTV margin giving a minimum CTV dose of at least 95 % for 90 % of patients.",
        "van Herk et al., IJROBP 2000;47:1121",
    ),
    Definition(
        "Stroom margin 2Σ + 0.7σ",
        "CTV→PTV margin giving on average 99 % of the CTV at least 95 % of the dose.",
        "Stroom et al., IJROBP 1999;43:905",
    ),
    Definition(
        f"{CONFIDENCE_LEVEL:.0%} CI",
        "Percentile bootstrap interval over patients (whole patients resampled, fixed seed); it "
        "tends to be narrow for small populations: a guide, not a bound.",
        "Efron & Tibshirani, An Introduction to the Bootstrap, 1993",
    ),
    Definition(
        "Verdict",
        "The van Herk point estimate compared with the margin in use; no verdict below "
        f"{MIN_PATIENTS_FOR_VERDICT} patients with 2 or more fractions (the numbers are still "
        "given).",
        "RCR/IPEM/SCoR, On Target, 2008",
    ),
    Definition(
        "Early warnings",
        f"NAL: the mean of a patient's first {DEFAULT_NAL_FRACTIONS} fractions (of the course "
        "when its earlier fractions were read, else of this report) beyond "
        f"±{DEFAULT_NAL_THRESHOLD_MM:.1f} mm on a translation axis. Weekly check: once "
        "there are more, the mean of all fractions to date beyond "
        f"±{DEFAULT_RUNNING_THRESHOLD_MM:.1f} mm.",
        "de Boer & Heijmen, IJROBP 2001;50:1350 and 2007;67:1586",
    ),
    Definition(
        "3D vector, ≥ 3 mm, ≥ 5 mm",
        "Vector length sqrt(lateral² + longitudinal² + vertical²) per fraction; a fraction counts "
        "as ≥ 3 mm (≥ 5 mm) when any translation axis reaches it. Per patient, 'beyond' means "
        "strictly greater than the margin in use or 5 mm.",
        "this software's definitions",
    ),
)


def mm(value: float | None, decimals: int = 2) -> str:
    """``1.23`` (a number in the axis unit), or ``—`` when undefined."""
    return MISSING if value is None else f"{value:.{decimals}f}"


def signed(value: float | None, decimals: int = 2) -> str:
    """``+1.23`` / ``-1.23`` for signed means, or ``—``."""
    return MISSING if value is None else f"{value:+.{decimals}f}"


def interval(ci: MarginIntervalMm | None) -> str:
    """``[2.10–3.40]`` or empty when there is no interval."""
    return "" if ci is None else f"[{ci.low_mm:.2f}–{ci.high_mm:.2f}]"


def percent(share: float | None) -> str:
    return MISSING if share is None else f"{100.0 * share:.1f} %"


def patient_label(patient: PatientStatistics) -> str:
    return f"{patient.patient_id} / {patient.course_id}"


def headline(report: Report) -> str:
    """One sentence on what the report holds, e.g. ``No fractions in 2026-W48 (23–29 Nov 2026).``"""
    period = report.context.period.phrase
    site = "" if report.context.site is None else f" for site {report.context.site}"
    stats = report.statistics
    if report.is_empty:
        return f"No fractions {period}{site}."
    patients = "patient" if stats.n_patients == 1 else "patients"
    fractions = "fraction" if stats.n_fractions == 1 else "fractions"
    listed_only = len(report.rows) - stats.n_fractions
    more = f" ({listed_only} more listed, not counted: see the notes)" if listed_only else ""
    return f"{stats.n_fractions} {fractions} of {stats.n_patients} {patients} {period}{site}{more}."


def summary_line(report: Report) -> str:
    """Margin in use, shift source and site in one sentence."""
    context = report.context
    site = context.site if context.site is not None else "all sites"
    return (
        f"Margin in use {context.margin_in_use_mm:.1f} mm. Shift source: "
        f"{context.shift_source.value}. Site: {site}."
    )


def footer_line(report: Report) -> str:
    """Who made the report and when, for the foot of every page."""
    generated = report.context.generated_at_utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"mvct-guide · generated {generated} by {report.context.generated_by}"


@dataclass(frozen=True, slots=True)
class PopulationRow:
    """One axis of the population table, as text (translations in mm, roll in degrees)."""

    axis: str
    unit: str
    n_patients: str
    mean: str
    systematic_sd: str
    random_rms: str
    van_herk: str
    van_herk_ci: str
    stroom: str
    stroom_ci: str
    margin_in_use: str
    verdict: MarginVerdict | None
    verdict_label: str
    note: str


def _translation_row(name: str, pop: PopulationTranslationStats) -> PopulationRow:
    return PopulationRow(
        axis=AXIS_LABELS[name],
        unit="mm",
        n_patients=f"{pop.n_patients} ({pop.n_patients_with_sd})",
        mean=signed(pop.mean_mm),
        systematic_sd=mm(pop.systematic_sd_mm),
        random_rms=mm(pop.random_rms_mm),
        van_herk=mm(pop.van_herk_margin_mm),
        van_herk_ci=interval(pop.van_herk_interval),
        stroom=mm(pop.stroom_margin_mm),
        stroom_ci=interval(pop.stroom_interval),
        margin_in_use=mm(pop.margin_in_use_mm, 1),
        verdict=pop.verdict,
        verdict_label=VERDICT_LABELS[pop.verdict],
        note=pop.note,
    )


def population_rows(report: Report) -> list[PopulationRow]:
    """Lateral, longitudinal, vertical (with margins and verdicts), then roll (no margin)."""
    pop = report.statistics.population
    roll = pop.roll
    rows = [
        _translation_row("lateral", pop.lateral),
        _translation_row("longitudinal", pop.longitudinal),
        _translation_row("vertical", pop.vertical),
    ]
    rows.append(
        PopulationRow(
            axis=AXIS_LABELS["roll"],
            unit="deg",
            n_patients=f"{roll.n_patients} ({roll.n_patients_with_sd})",
            mean=signed(roll.mean_deg),
            systematic_sd=mm(roll.systematic_sd_deg),
            random_rms=mm(roll.random_rms_deg),
            van_herk=MISSING,
            van_herk_ci="",
            stroom=MISSING,
            stroom_ci="",
            margin_in_use=MISSING,
            verdict=None,
            verdict_label="no margin recipe for rotations",
            note="",
        )
    )
    return rows


def fraction_lines(report: Report) -> list[str]:
    """The fraction-level numbers as sentences."""
    f = report.statistics.fractions
    if f.n_fractions == 0:
        return ["No fractions: no 3D vectors and no threshold counts."]
    return [
        f"Fractions with any translation axis ≥ 3 mm: {f.n_any_axis_at_least_3mm} of "
        f"{f.n_fractions} ({percent(f.share_any_axis_at_least_3mm)}).",
        f"Fractions with any translation axis ≥ 5 mm: {f.n_any_axis_at_least_5mm} of "
        f"{f.n_fractions} ({percent(f.share_any_axis_at_least_5mm)}).",
        f"3D shift vector: mean {mm(f.vector_mean_mm)} mm, median {mm(f.vector_median_mm)} mm, "
        f"max {mm(f.vector_max_mm)} mm.",
    ]


def about_items(report: Report) -> list[tuple[str, str]]:
    """(label, value) pairs describing how the report was made."""
    context, stats = report.context, report.statistics
    resamples = (
        f"{stats.bootstrap_resamples} resamples, seed {stats.bootstrap_seed}"
        if stats.bootstrap_resamples
        else "none (no confidence intervals)"
    )
    return [
        ("Period", context.period.description),
        ("Dates", f"{context.period.start.isoformat()} to {context.period.end.isoformat()}"),
        ("Site", context.site if context.site is not None else "all sites"),
        ("Shift source", SHIFT_SOURCE_TEXT[context.shift_source]),
        ("Margin in use", f"{context.margin_in_use_mm:.1f} mm (CTV→PTV)"),
        ("Patients (courses)", str(stats.n_patients)),
        ("Fractions", str(stats.n_fractions)),
        ("Warnings evaluated as of", stats.as_of.isoformat() if stats.as_of else MISSING),
        ("Bootstrap", resamples),
        ("Generated at", context.generated_at_utc.strftime("%Y-%m-%d %H:%M UTC")),
        ("Generated by", context.generated_by),
    ]


def notes(report: Report) -> list[str]:
    """What a reader must know to trust the numbers: the statistics' notes and per-axis notes."""
    pop = report.statistics.population
    axis_notes = [
        f"{AXIS_LABELS[name]}: {stats.note}"
        for name, stats in (
            ("lateral", pop.lateral),
            ("longitudinal", pop.longitudinal),
            ("vertical", pop.vertical),
        )
    ]
    return [*report.notes, *report.statistics.notes, *axis_notes]


def patient_table_header(report: Report) -> list[str]:
    """The header of the per-patient table in the PDF and HTML (units in every name)."""
    margin_mm = report.context.margin_in_use_mm
    return [
        "Patient / course",
        "n",
        "Lateral m_p / s_p (mm)",
        "Longitudinal m_p / s_p (mm)",
        "Vertical m_p / s_p (mm)",
        "Roll m_p / s_p (deg)",
        "3D mean / max (mm)",
        f"n > {margin_mm:g} mm (lat/long/vert)",
    ]


def patient_cells(patient: PatientStatistics) -> list[str]:
    """One row of the per-patient table: systematic / random error per axis, as text."""

    def axis(mean: float, sd: float | None) -> str:
        return f"{signed(mean)} / {mm(sd)}"

    translations = (patient.lateral, patient.longitudinal, patient.vertical)
    return [
        patient_label(patient),
        str(patient.n_fractions),
        axis(patient.lateral.mean_mm, patient.lateral.sd_mm),
        axis(patient.longitudinal.mean_mm, patient.longitudinal.sd_mm),
        axis(patient.vertical.mean_mm, patient.vertical.sd_mm),
        axis(patient.roll.mean_deg, patient.roll.sd_deg),
        f"{mm(patient.vector_mean_mm)} / {mm(patient.vector_max_mm)}",
        "/".join(str(a.n_beyond_margin) for a in translations),
    ]


WARNING_TABLE_HEADER: Final = (
    "Patient / course",
    "Check",
    "Axis",
    "Mean shift (mm)",
    "Threshold (mm)",
    "Fractions in the mean",
)


def warning_rows(report: Report) -> list[list[str]]:
    """The early warnings as table rows (the full sentences are in the XLSX "Warnings" sheet)."""
    return [
        [
            f"{w.patient_id} / {w.course_id}",
            WARNING_KIND_LABELS[w.kind],
            str(w.axis),
            signed(w.value_mm),
            f"±{w.threshold_mm:.1f}",
            str(w.n_fractions),
        ]
        for w in report.statistics.warnings
    ]


def warning_legend(report: Report) -> str:
    """What each check means and what to do, in one paragraph."""
    if not report.statistics.warnings:
        return "No early warnings."
    return (
        f"First fractions (NAL): the mean of a patient's first {DEFAULT_NAL_FRACTIONS} fractions "
        "is beyond the threshold: consider a systematic correction. Running "
        "systematic (weekly check): the mean of all fractions to "
        f"{report.context.period.end.isoformat()} is beyond it: the systematic error persists; "
        "review the set-up and consider a correction."
    )
