"""The physicists' PDF (reportlab platypus, A4 portrait).

Contents, in order: title and period, the population table (M, Σ, σ, margins with 95 % CIs vs
the margin in use, the verdict: bold red when not adequate), notes, the three parts, the
residuals at the target and the organs at risk (as on the HTML page), fraction-level numbers,
early warnings, box plots, 3D histogram, per-patient time series, the per-patient table, definitions
and how the report was made. Every page carries the title and the period in its header and
"Page i of N" with the generation time in its footer.

Text is set in DejaVu Sans, the TrueType font bundled with matplotlib (Σ, σ, ≥, ± need a
Unicode font; the PDF base-14 fonts lack them). It is registered with reportlab once, on first
use; nothing is downloaded.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from app.services.reports.model import Report
from app.services.reports.plots import DEFAULT_MAX_PATIENTS_PLOTTED, ReportFigures, render_figures
from app.services.reports.present import PopulationRow
from app.services.reports.present_parts import ReportSections, ResidualTables, report_sections
from registration.stats import MarginVerdict

FONT: Final = "MvctGuideSans"
FONT_BOLD: Final = "MvctGuideSans-Bold"
_PAGE_WIDTH, _PAGE_HEIGHT = A4
_MARGIN: Final = 15 * mm
_TEXT_WIDTH: Final = _PAGE_WIDTH - 2 * _MARGIN
_RED_HEX: Final = "#C00000"  # "not adequate"
_GREEN_HEX: Final = "#1E6B2F"  # "adequate"
_GRID: Final = colors.HexColor("#B0B0B0")
_HEADER_FILL: Final = colors.HexColor("#E8EDF3")


@functools.cache
def _register_fonts() -> None:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(FONT, str(ttf / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(ttf / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12, spaceAfter=3)
    return {
        "body": body,
        "title": ParagraphStyle("title", body, fontName=FONT_BOLD, fontSize=17, leading=21),
        "subtitle": ParagraphStyle("subtitle", body, fontSize=11, leading=14, spaceAfter=6),
        "headline": ParagraphStyle("headline", body, fontName=FONT_BOLD, fontSize=11, leading=14),
        "h2": ParagraphStyle(
            "h2",
            body,
            fontName=FONT_BOLD,
            fontSize=12,
            leading=15,
            spaceBefore=9,
            spaceAfter=4,
            keepWithNext=True,
        ),
        "small": ParagraphStyle("small", body, fontSize=7.5, leading=9.5, spaceAfter=2),
        "caption": ParagraphStyle(
            "caption",
            body,
            fontSize=7.5,
            leading=9.5,
            textColor=colors.HexColor("#444444"),
            keepWithNext=True,
        ),
        "cell": ParagraphStyle("cell", body, fontSize=7.5, leading=9, spaceAfter=0),
        "head": ParagraphStyle(
            "head", body, fontName=FONT_BOLD, fontSize=7.5, leading=9, spaceAfter=0
        ),
        "bullet": ParagraphStyle(
            "bullet", body, fontSize=8.5, leading=11, leftIndent=10, bulletIndent=0, spaceAfter=2
        ),
    }


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text (escaped: data never becomes markup)."""
    return Paragraph(escape(text), style)


def _bullets(items: Sequence[str], style: ParagraphStyle) -> list[Flowable]:
    return [Paragraph(escape(item), style, bulletText="•") for item in items]


def _table(rows: list[list[Any]], widths: Sequence[float]) -> Table:
    table = Table(rows, colWidths=list(widths), repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, _GRID),
                ("BACKGROUND", (0, 0), (-1, 0), _HEADER_FILL),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _verdict_cell(row: PopulationRow, s: dict[str, ParagraphStyle]) -> Paragraph:
    text = escape(row.verdict_label)
    if row.verdict is MarginVerdict.NOT_ADEQUATE:
        return Paragraph(f'<font color="{_RED_HEX}"><b>{text}</b></font>', s["cell"])
    if row.verdict is MarginVerdict.ADEQUATE:
        return Paragraph(f'<font color="{_GREEN_HEX}">{text}</font>', s["cell"])
    return Paragraph(f"<i>{text}</i>", s["cell"])


def _population_table(rows: list[PopulationRow], s: dict[str, ParagraphStyle]) -> Table:
    head = ["Axis", "n (≥ 2)", "M", "Σ", "σ", "van Herk\n2.5Σ + 0.7σ", "Stroom\n2Σ + 0.7σ"]
    header = [_p(h, s["head"]) for h in [*head, "In use", "Verdict"]]
    body: list[list[Any]] = [header]
    for row in rows:
        cells = [f"{row.axis} [{row.unit}]", row.n_patients, row.mean, row.systematic_sd]
        cells += [row.random_rms, f"{row.van_herk} {row.van_herk_ci}".strip()]
        cells += [f"{row.stroom} {row.stroom_ci}".strip(), row.margin_in_use]
        body.append([_p(c, s["cell"]) for c in cells] + [_verdict_cell(row, s)])
    widths = [33, 13, 13, 13, 13, 29, 29, 12, 25]
    return _table(body, [w * mm for w in widths])


def _parts_story(sections: ReportSections, s: dict[str, ParagraphStyle]) -> list[Flowable]:
    if not sections.parts:
        return []
    story: list[Flowable] = [_p("Set-up error in three parts", s["h2"])]
    head = [_p(h, s["head"]) for h in sections.part_header]
    for part in sections.parts:
        body: list[list[Any]] = [head]
        body += [[_p(c, s["cell"]) for c in cells] for cells in part.rows]
        widths = [19, 8, 11, 11, 12, 12, 13, 12, 15, 15, 15, 22]
        story += [
            _p(part.title, s["body"]),
            _table(body, [w * mm for w in widths]),
            Spacer(1, 2 * mm),
        ]
        if part.kind == "residual":  # part (b) at the PTV, as on the HTML page
            story += _residuals_story(sections.part_b_ptv, s["body"], s)
    story += _bullets(sections.part_notes, s["bullet"])
    if sections.offline:
        story.append(_p("Offline protocols (courses without daily imaging)", s["h2"]))
        story.append(_p(sections.offline_note, s["small"]))
        body = [[_p(h, s["head"]) for h in sections.offline_header]]
        body += [[_p(c, s["cell"]) for c in cells] for cells in sections.offline]
        story.append(_table(body, [w * mm for w in (16, 10, 11, 20, 10, 24, 24, 50)]))
    return story


def _residuals_story(
    tables: ResidualTables, title_style: ParagraphStyle, s: dict[str, ParagraphStyle]
) -> list[Flowable]:
    """As on the HTML page: nothing without structures, else the population and patient tables."""
    if not tables.population:
        return []
    story: list[Flowable] = [_p(tables.title, title_style), _p(tables.note, s["small"])]
    for head, rows, widths in (
        (tables.population_header, tables.population, (50, 22, 22, 25, 30, 25)),
        (tables.patient_header, tables.patients, (40, 60, 22, 25, 25)),
    ):
        body = [
            [_p(c, s["head" if i == 0 else "cell"]) for c in r] for i, r in enumerate([head, *rows])
        ]
        story += [_table(body, [w * mm for w in widths]), Spacer(1, 2 * mm)]
    return story


def _patients_table(sections: ReportSections, s: dict[str, ParagraphStyle]) -> Table:
    head = sections.patient_header
    body: list[list[Any]] = [[_p(h, s["head"]) for h in head]]
    for cells in sections.patients:
        body.append([_p(c, s["cell"]) for c in cells])
    if not sections.patients:
        body.append([_p("No patients.", s["cell"])] + [""] * (len(head) - 1))
    widths = [32, 8, 23, 25, 23, 22, 22, 25]
    return _table(body, [w * mm for w in widths])


def _warnings_table(sections: ReportSections, s: dict[str, ParagraphStyle]) -> Table:
    body: list[list[Any]] = [[_p(h, s["head"]) for h in sections.warning_header]]
    body += [[_p(c, s["cell"]) for c in row] for row in sections.warnings]
    widths = [40, 50, 24, 22, 22, 22]
    return _table(body, [w * mm for w in widths])


def _image(png: bytes) -> Image:
    width_px, height_px = ImageReader(io.BytesIO(png)).getSize()
    return Image(io.BytesIO(png), width=_TEXT_WIDTH, height=_TEXT_WIDTH * height_px / width_px)


def _figures_story(figures: ReportFigures, s: dict[str, ParagraphStyle]) -> list[Flowable]:
    story: list[Flowable] = [_p("Distribution of shifts", s["h2"])]
    if figures.box_plot_png is None or figures.histogram_png is None:
        return [*story, _p("No fractions: nothing to plot.", s["body"])]
    story += [
        _p(
            "Per-fraction shifts per axis (box: quartiles, line: median, whiskers: 1.5 IQR).",
            s["caption"],
        ),
        _image(figures.box_plot_png),
        _p("3D shift vector length per fraction.", s["caption"]),
        _image(figures.histogram_png),
        _p("Per-patient time series", s["h2"]),
        _p(figures.time_series_caption, s["caption"]),
    ]
    story += [_image(png) for png in figures.time_series_pngs]
    return story


def _story(sections: ReportSections, figures: ReportFigures) -> list[Flowable]:
    s = _styles()
    story: list[Flowable] = [
        _p(sections.title, s["title"]),
        _p(sections.period, s["subtitle"]),
        _p(sections.headline, s["headline"]),
        _p(sections.summary, s["body"]),
        _p("Population set-up errors and the margins they imply", s["h2"]),
        _population_table(sections.population, s),
        Spacer(1, 2 * mm),
        _p(
            "n: patients (courses), in brackets those with 2 or more fractions. M, Σ, σ in the "
            "axis unit; margins in mm as point estimate [95 % bootstrap CI].",
            s["small"],
        ),
        *_bullets(sections.notes, s["bullet"]),
        *_parts_story(sections, s),
        *_residuals_story(sections.residuals, s["h2"], s),
        _p("Fractions", s["h2"]),
        *_bullets(sections.fraction_lines, s["bullet"]),
        _p("Early warnings", s["h2"]),
    ]
    story.append(_p(sections.warning_legend, s["body"]))
    if sections.warnings:
        story.append(_warnings_table(sections, s))
    story += _figures_story(figures, s)
    story += [
        _p("Per-patient systematic and random errors", s["h2"]),
        _patients_table(sections, s),
    ]
    definitions = [
        Paragraph(f"<b>{escape(d.term)}</b>: {escape(d.text)} ({escape(d.source)})", s["small"])
        for d in sections.definitions
    ]
    about = [
        Paragraph(f"<b>{escape(label)}</b>: {escape(value)}", s["small"])
        for label, value in sections.about
    ]
    story.append(KeepTogether([_p("Definitions", s["h2"]), *definitions]))
    story.append(KeepTogether([_p("About this report", s["h2"]), *about]))
    return story


class _NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab is untyped
    """Defers each page until the end so that its footer can say "Page i of N"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for page in self._pages:
            self.__dict__.update(page)
            self.setFont(FONT, 7.5)
            self.setFillColor(colors.black)
            self.drawRightString(
                _PAGE_WIDTH - _MARGIN, 9 * mm, f"Page {self._pageNumber} of {total}"
            )
            super().showPage()
        super().save()


def _decorate(sections: ReportSections) -> Any:

    def on_page(canvas: Canvas, _doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.setFillColor(colors.HexColor("#333333"))
        top = _PAGE_HEIGHT - 10 * mm
        canvas.drawString(_MARGIN, top, sections.title)
        canvas.drawRightString(_PAGE_WIDTH - _MARGIN, top, sections.period)
        canvas.setStrokeColor(_GRID)
        canvas.setLineWidth(0.4)
        canvas.line(_MARGIN, top - 2 * mm, _PAGE_WIDTH - _MARGIN, top - 2 * mm)
        canvas.line(_MARGIN, 13 * mm, _PAGE_WIDTH - _MARGIN, 13 * mm)
        canvas.drawString(_MARGIN, 9 * mm, sections.footer)
        canvas.restoreState()

    return on_page


def to_pdf(
    report: Report,
    *,
    figures: ReportFigures | None = None,
    max_patients_plotted: int = DEFAULT_MAX_PATIENTS_PLOTTED,
) -> bytes:
    """The report as an A4 PDF.

    ``figures`` may be passed when they were already drawn (e.g. for the HTML page too);
    otherwise they are drawn here with at most ``max_patients_plotted`` time series.
    An empty report gives a short valid PDF that says there were no fractions.
    """
    _register_fonts()
    if figures is None:
        figures = render_figures(report, max_patients_plotted)
    buffer = io.BytesIO()
    context = report.context
    sections = report_sections(report)
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"{context.title}, {context.period.description}",
        author=context.generated_by,
        subject=sections.headline,
        creator="mvct-guide",
        invariant=True,
    )
    frame = Frame(
        doc.leftMargin,
        doc.bottomMargin,
        doc.width,
        doc.height,
        id="body",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=_decorate(sections))])
    doc.build(_story(sections, figures), canvasmaker=_NumberedCanvas)
    return buffer.getvalue()
