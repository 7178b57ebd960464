"""The report's figures as PNG bytes, drawn with matplotlib's object API on an Agg canvas.

No pyplot, no ``matplotlib.use()``, no rcParams changes: every figure is a private
``Figure`` with its own ``FigureCanvasAgg``, so rendering touches no global state and is safe in a
threaded server. matplotlib is imported on first use, not when this module is imported (its first
import builds a font cache). Fonts are matplotlib's bundled DejaVu Sans: nothing is downloaded.

The figures plot the per-fraction shifts as they are; the only statistic drawn (the median
3D vector) is read from the report's statistics.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from app.services.reports.model import FractionRow, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the most per-patient time series drawn (the most-shifted patients first)
DEFAULT_MAX_PATIENTS_PLOTTED: Final = 40
#: small multiples per image: one image per row of this many patients
GRID_COLUMNS: Final = 4
DPI: Final = 150
#: figure width in inches, the text width of an A4 page with 15 mm margins (180 mm)
WIDTH_IN: Final = 7.0

_AXES: Final = (
    ("lateral", "lateral_mm", "#1f77b4"),
    ("longitudinal", "longitudinal_mm", "#d62728"),
    ("vertical", "vertical_mm", "#2ca02c"),
)
_MARGIN_STYLE: Final = {"color": "0.45", "linestyle": "--", "linewidth": 0.8}
_FONT_SIZE: Final = 7.0


@dataclass(frozen=True, slots=True)
class ReportFigures:
    """PNG images for the PDF and HTML; ``None`` / empty where there is nothing to plot."""

    box_plot_png: bytes | None  #: per-axis box plots of the per-fraction shifts
    histogram_png: bytes | None  #: 3D vector lengths of the fractions
    time_series_pngs: tuple[bytes, ...]  #: one image per row of small multiples
    time_series_caption: str  #: which patients are shown, in which order


def _figure(height_in: float, constrained: bool = True) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(
        figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained" if constrained else None
    )
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _style(ax: Axes, ylabel: str) -> None:
    ax.set_ylabel(ylabel, fontsize=_FONT_SIZE)
    ax.tick_params(labelsize=_FONT_SIZE - 0.5)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)


def _boxes(
    ax: Axes, data: Sequence[Sequence[float]], labels: Sequence[str], colours: Sequence[str]
) -> None:
    """Tukey box plots (box: quartiles, line: median, whiskers: 1.5 IQR, dots: beyond).

    Drawn from primitives because ``Axes.boxplot`` iterates over all of rcParams, which
    resolves the global backend and imports pyplot: exactly the global state this module avoids.
    The quartiles are matplotlib's own (``cbook.boxplot_stats``), as ``boxplot`` would use.
    """
    from matplotlib import cbook
    from matplotlib.patches import Rectangle

    half, colour_line, width_line = 0.25, "black", 0.8
    for x, (box, colour) in enumerate(
        zip(cbook.boxplot_stats(data, whis=1.5), colours, strict=True), start=1
    ):
        q1, q3 = float(box["q1"]), float(box["q3"])
        ax.add_patch(Rectangle((x - half, q1), 2 * half, q3 - q1, facecolor=colour, alpha=0.35))
        ax.add_patch(
            Rectangle(
                (x - half, q1),
                2 * half,
                q3 - q1,
                fill=False,
                edgecolor=colour_line,
                linewidth=width_line,
            )
        )
        ax.plot([x - half, x + half], [box["med"]] * 2, color="black", linewidth=1.2)
        for end, low, high in (
            (box["whislo"], box["whislo"], q1),
            (box["whishi"], q3, box["whishi"]),
        ):
            ax.plot([x, x], [low, high], color=colour_line, linewidth=width_line)
            ax.plot(
                [x - half / 2, x + half / 2], [end, end], color=colour_line, linewidth=width_line
            )
        fliers = list(box["fliers"])
        ax.plot(
            [x] * len(fliers),
            fliers,
            "o",
            markersize=2.5,
            markerfacecolor="none",
            markeredgecolor="black",
            markeredgewidth=0.5,
        )
    ax.set_xlim(0.4, len(data) + 0.6)
    ax.set_xticks(range(1, len(data) + 1), labels)


def _value(row: FractionRow, field: str) -> float:
    """A shift value of a row that counts in the statistics (those have every value)."""
    return float(getattr(row, field))


def box_plot_png(report: Report) -> bytes | None:
    """Box plots of the per-fraction shifts: translations (mm, with ±margin) and roll (deg)."""
    rows = report.counted_rows
    if not rows:
        return None
    margin_mm = report.context.margin_in_use_mm
    figure = _figure(2.6)
    translations, roll = figure.subplots(1, 2, width_ratios=[3, 1])
    data = [[_value(row, field) for row in rows] for _, field, _ in _AXES]
    _boxes(translations, data, [name for name, _, _ in _AXES], [c for _, _, c in _AXES])
    for level in (margin_mm, -margin_mm):
        translations.axhline(level, **_MARGIN_STYLE)
    translations.text(
        0.99,
        0.98,
        f"dashed: ±{margin_mm:g} mm margin",
        transform=translations.transAxes,
        ha="right",
        va="top",
        fontsize=_FONT_SIZE - 1,
        color="0.35",
    )
    _style(translations, "shift per fraction (mm)")
    _boxes(roll, [[_value(row, "roll_deg") for row in rows]], ["roll"], ["0.6"])
    _style(roll, "roll per fraction (deg)")
    return _png(figure)


def histogram_png(report: Report) -> bytes | None:
    """Histogram of the fractions' 3D shift vector lengths (0.5 mm bins), median marked."""
    counted = [
        vector_mm
        for row, vector_mm in zip(report.rows, report.vectors_mm, strict=True)
        if row.counts_in_statistics and vector_mm is not None
    ]
    if not counted:
        return None
    import numpy as np

    vectors = np.asarray(counted)
    edges = np.arange(0.0, float(vectors.max()) + 0.5 + 1e-9, 0.5)
    figure = _figure(2.3)
    ax = figure.subplots()
    ax.hist(vectors, bins=edges.tolist(), color="#5b7fa6", edgecolor="white", linewidth=0.5)
    median_mm = report.statistics.fractions.vector_median_mm
    if median_mm is not None:
        ax.axvline(median_mm, color="black", linewidth=1.0)
        ax.text(
            median_mm,
            0.97,
            f" median {median_mm:.2f} mm",
            transform=ax.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=_FONT_SIZE - 0.5,
        )
    ax.set_xlabel("3D shift vector per fraction (mm)", fontsize=_FONT_SIZE)
    _style(ax, "fractions")
    return _png(figure)


def _series_by_course(rows: Sequence[FractionRow]) -> dict[tuple[str, str], list[FractionRow]]:
    series: dict[tuple[str, str], list[FractionRow]] = {}
    for row in rows:  # the report's rows are sorted by course and fraction number
        series.setdefault((row.patient_id, row.course_id), []).append(row)
    return series


def _most_shifted(report: Report) -> list[tuple[str, str]]:
    ranked = sorted(
        report.statistics.patients,
        key=lambda p: (-p.vector_mean_mm, p.patient_id, p.course_id),
    )
    return [(p.patient_id, p.course_id) for p in ranked]


def _time_series_strip(
    courses: Sequence[tuple[str, str]],
    series: dict[tuple[str, str], list[FractionRow]],
    limit_mm: float,
    margin_mm: float,
    legend: bool,
) -> bytes:
    """One row of up to :data:`GRID_COLUMNS` panels (rows flow across PDF pages)."""
    top_in = 0.42 if legend else 0.22
    bottom_in, panel_in = 0.36, 1.25
    height_in = top_in + bottom_in + panel_in
    figure = _figure(height_in, constrained=False)  # a fixed grid: constrained layout is 2× slower
    figure.subplots_adjust(
        left=0.6 / WIDTH_IN,
        right=1 - 0.1 / WIDTH_IN,
        top=1 - top_in / height_in,
        bottom=bottom_in / height_in,
        wspace=0.12,
    )
    axes = figure.subplots(1, GRID_COLUMNS, squeeze=False, sharey=True)[0]
    for index, ax in enumerate(axes):
        if index >= len(courses):
            ax.set_visible(False)
            continue
        patient_id, course_id = courses[index]
        fractions = series[(patient_id, course_id)]
        numbers = [row.fraction_number for row in fractions]
        for name, field, colour in _AXES:
            values = [getattr(row, field) for row in fractions]
            ax.plot(
                numbers, values, marker="o", markersize=2, linewidth=0.8, color=colour, label=name
            )
        for level in (margin_mm, -margin_mm):
            ax.axhline(level, **_MARGIN_STYLE)
        ax.set_ylim(-limit_mm, limit_mm)
        ax.set_title(f"{patient_id} / {course_id}", fontsize=_FONT_SIZE, pad=2)
        ax.tick_params(labelsize=_FONT_SIZE - 1, pad=1)
        ax.grid(color="0.92", linewidth=0.5)
        ax.set_xlabel("fraction", fontsize=_FONT_SIZE - 1, labelpad=1)
    axes[0].set_ylabel("shift (mm)", fontsize=_FONT_SIZE - 0.5)
    if legend:
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, 1.0),
            ncols=3,
            fontsize=_FONT_SIZE,
            frameon=False,
        )
    return _png(figure)


def time_series_pngs(
    report: Report, max_patients: int = DEFAULT_MAX_PATIENTS_PLOTTED
) -> tuple[tuple[bytes, ...], str]:
    """Small multiples of lateral, longitudinal and vertical shift against fraction number.

    One panel per patient (course), the patients with the largest mean 3D shift first, at most
    ``max_patients`` of them, one image per row of :data:`GRID_COLUMNS` panels (the first with
    the legend), one y scale for all panels. Returns the images and a caption saying what is
    shown.
    """
    rows = report.counted_rows
    if not rows:
        return (), "No fractions: no time series."
    ranked = _most_shifted(report)
    shown = ranked[: max(0, max_patients)]
    series = _series_by_course(rows)
    margin_mm = report.context.margin_in_use_mm
    largest = max(abs(getattr(row, field)) for row in rows for _, field, _ in _AXES)
    limit_mm = 1.15 * max(largest, margin_mm)
    strips = tuple(
        _time_series_strip(shown[i : i + GRID_COLUMNS], series, limit_mm, margin_mm, i == 0)
        for i in range(0, len(shown), GRID_COLUMNS)
    )
    caption = (
        "Lateral, longitudinal and vertical shift (mm) against fraction number, one panel per "
        f"patient / course, largest mean 3D shift first; dashed: ±{margin_mm:g} mm margin."
    )
    if len(shown) < len(ranked):
        caption += (
            f" Showing the {len(shown)} of {len(ranked)} patients with the largest mean 3D "
            "shift; every patient is in the per-patient table and the XLSX export."
        )
    return strips, caption


def render_figures(
    report: Report, max_patients: int = DEFAULT_MAX_PATIENTS_PLOTTED
) -> ReportFigures:
    """All figures of a report (a few hundred ms per image)."""
    pages, caption = time_series_pngs(report, max_patients)
    return ReportFigures(
        box_plot_png=box_plot_png(report),
        histogram_png=histogram_png(report),
        time_series_pngs=pages,
        time_series_caption=caption,
    )
