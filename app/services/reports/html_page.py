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
from app.services.reports.present_parts import report_sections


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
    template = _environment().get_template("report.html")
    return template.render(
        sections=report_sections(report),
        box_plot=_data_uri(figures.box_plot_png),
        histogram=_data_uri(figures.histogram_png),
        time_series=[_data_uri(png) for png in figures.time_series_pngs],
        time_series_caption=figures.time_series_caption,
    )
