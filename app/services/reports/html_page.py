"""The physicists' HTML page: one self-contained file with the same content as the PDF.

Inline CSS, figures as PNG data URIs, no script and no external request. Rendered with jinja2
and ``autoescape=True``: every value from the data (patient IDs, names, notes) is escaped, so
an ID like ``<script>`` is shown, never run. The template is ``templates/report.html``.
"""

from __future__ import annotations

import base64
import functools

import jinja2

from app.services.reports.model import Report
from app.services.reports.plots import DEFAULT_MAX_PATIENTS_PLOTTED, ReportFigures, render_figures
from app.services.reports.present import (
    DEFINITIONS,
    WARNING_TABLE_HEADER,
    about_items,
    footer_line,
    fraction_lines,
    headline,
    notes,
    patient_cells,
    patient_table_header,
    population_rows,
    summary_line,
    warning_legend,
    warning_rows,
)
from app.services.reports.present_parts import (
    OFFLINE_HEADER,
    OFFLINE_NOTE,
    PART_B_PTV_NOTE,
    PART_B_PTV_TITLE,
    PART_HEADER,
    PART_TITLES,
    RESIDUALS_NOTE,
    RESIDUALS_PATIENT_HEADER,
    RESIDUALS_POPULATION_HEADER,
    RESIDUALS_TITLE,
    offline_rows,
    part_b_ptv_patient_cells,
    part_b_ptv_population_cells,
    part_cells,
    part_notes,
    parts_of,
    residual_patient_cells,
    residual_population_cells,
)


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("app.services.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def to_html(
    report: Report,
    *,
    figures: ReportFigures | None = None,
    max_patients_plotted: int = DEFAULT_MAX_PATIENTS_PLOTTED,
) -> str:
    """The report as a self-contained HTML page (UTF-8 text; encode it to serve it).

    ``figures`` may be passed when they were already drawn (e.g. for the PDF too); otherwise
    they are drawn here. An empty report gives a valid page that says there were no fractions.
    """
    if figures is None:
        figures = render_figures(report, max_patients_plotted)
    context = report.context
    template = _environment().get_template("report.html")
    return template.render(
        title=context.title,
        period=context.period.description,
        headline=headline(report),
        summary=summary_line(report),
        population=population_rows(report),
        residuals_title=RESIDUALS_TITLE,
        residuals_note=RESIDUALS_NOTE,
        residual_population_header=RESIDUALS_POPULATION_HEADER,
        residual_population=residual_population_cells(report),
        residual_patient_header=RESIDUALS_PATIENT_HEADER,
        residual_patients=residual_patient_cells(report),
        notes=notes(report),
        fraction_lines=fraction_lines(report),
        warning_legend=warning_legend(report),
        warning_header=WARNING_TABLE_HEADER,
        warnings=warning_rows(report),
        box_plot=_data_uri(figures.box_plot_png),
        histogram=_data_uri(figures.histogram_png),
        time_series=[_data_uri(png) for png in figures.time_series_pngs],
        time_series_caption=figures.time_series_caption,
        patient_header=patient_table_header(report),
        patients=[patient_cells(p) for p in report.statistics.patients],
        definitions=DEFINITIONS,
        about=about_items(report),
        footer=footer_line(report),
        parts=[(PART_TITLES[p.kind.value], part_cells(p)) for p in parts_of(report)],
        part_header=PART_HEADER[1:],
        part_notes=part_notes(report),
        part_b_ptv_title=PART_B_PTV_TITLE,
        part_b_ptv_note=PART_B_PTV_NOTE,
        part_b_ptv_population=part_b_ptv_population_cells(report),
        part_b_ptv_patients=part_b_ptv_patient_cells(report),
        offline_note=OFFLINE_NOTE,
        offline_header=OFFLINE_HEADER,
        offline=offline_rows(report),
    )
