"""The monthly daily-QA record of one machine, to file: CSV (one row per scan) or PDF.

Both carry the same figures: per scan the couch offset applied, per axis the correction expected
and found, the error and pass/fail, the image figures with their checks, the verdict and who
acknowledged a failure. The PDF adds the control chart of each translation (error per day,
tolerance and control limits, :func:`registration.qa.control_chart`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from app.db.models_anatomy import QaCourse
from app.errors import NotFoundError, UnprocessableError
from app.services.daily_qa import local_midnight, machine_days, qa_course_for_machine
from app.services.qa_verdict import QaDay, charts
from registration.qa import AXES, ControlChart


@dataclass(frozen=True)
class Document:
    content: bytes
    media_type: str
    file_name: str


def month_bounds(month: str) -> tuple[date, date]:
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise UnprocessableError(f"month {month!r} is not a month: use YYYY-MM") from None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following


def monthly(session: Session, machine: str, month: str, fmt: str) -> Document:
    qa = qa_course_for_machine(session, machine)
    if qa is None:
        raise NotFoundError(f"machine {machine!r} has no QA course")
    first, following = month_bounds(month)
    days = machine_days(session, machine, local_midnight(first), local_midnight(following))
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in machine)
    name = f"daily-qa_{safe}_{month}.{fmt}"
    if fmt == "csv":
        return Document(to_csv(days).encode("utf-8"), "text/csv; charset=utf-8", name)
    if fmt == "pdf":
        return Document(to_pdf(qa, month, days), "application/pdf", name)
    raise UnprocessableError(f"format {fmt!r}: use csv or pdf")


def csv_header() -> list[str]:
    head = ["scanned_at", "fraction_id", "verdict", "trusted"]
    head += [f"offset_applied_{a}" for a in AXES]
    for axis in AXES:
        head += [f"expected_{axis}", f"found_{axis}", f"error_{axis}", f"pass_{axis}"]
    head += ["noise_hu", "uniformity_hu", "inserts", "image_checks_failed", "reasons"]
    return [*head, "acknowledged_by", "acknowledged_note"]


def _row(day: QaDay) -> list[object]:
    row: list[object] = [
        day.scanned_at.astimezone().isoformat(timespec="minutes"),
        day.fraction_id,
        day.verdict,
        "" if day.trusted is None else str(day.trusted).lower(),
    ]
    offset = None if day.applied_offset is None else day.applied_offset.as_dict()
    row += ["" if offset is None else f"{offset[a]:.2f}" for a in AXES]
    for index in range(len(AXES)):
        if day.positioning is None:
            row += ["", "", "", ""]
        else:
            a = day.positioning.axes[index]
            row += [f"{a.expected:.2f}", f"{a.found:.2f}", f"{a.error:.2f}", str(a.passed).lower()]
    figures = day.image_figures
    row += [
        "" if figures is None else f"{figures.noise_hu:.1f}",
        "" if figures is None else f"{figures.uniformity_hu:.1f}",
        "" if figures is None else "; ".join(f"{n} {v:.0f}" for n, v in figures.inserts),
        "; ".join(c.figure for c in day.image if not c.passed),
        "; ".join(day.reasons),
        "" if day.acknowledged is None else day.acknowledged.printed_name,
        "" if day.acknowledged is None else day.acknowledged.note,
    ]
    return row


def to_csv(days: list[QaDay]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(csv_header())
    for day in days:
        writer.writerow(_row(day))
    return buffer.getvalue()


def _chart_png(axis: str, chart: ControlChart, labels: list[str]) -> bytes:
    from app.services.reports.plots import _figure, _png

    figure = _figure(1.7)
    ax = figure.add_subplot()
    xs = list(range(len(chart.values)))
    ax.plot(xs, chart.values, marker="o", markersize=3, color="#3f88c5", linewidth=1)
    for level, style in (
        (chart.upper_tolerance, "--"),
        (chart.lower_tolerance, "--"),
        (chart.upper_control_limit, ":"),
        (chart.lower_control_limit, ":"),
    ):
        ax.axhline(level, color="#c00000" if style == "--" else "#888888", linestyle=style)
    ax.axhline(chart.mean, color="#29a35a", linewidth=0.8)
    ax.set_xticks(xs, labels, fontsize=6, rotation=60)
    unit = "mm" if axis.endswith("_mm") else "°"
    ax.set_ylabel(f"{axis.rsplit('_', 1)[0]} error ({unit})", fontsize=7)
    ax.tick_params(labelsize=6)
    return _png(figure)


def to_pdf(qa: QaCourse, month: str, days: list[QaDay]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, SimpleDocTemplate

    from app.services.reports.pdf import _p, _register_fonts, _styles, _table

    _register_fonts()
    s = _styles()
    story = [
        _p(f"Daily imaging QA — {qa.machine} — {month}", s["title"]),
        _p(
            f"Positioning tolerance ±{qa.translation_tolerance_mm:g} mm, "
            f"±{qa.rotation_tolerance_deg:g}° (AAPM TG-142 daily imaging positioning/"
            "repositioning: 2 mm, 1 mm for SRS/SBRT machines). Error = correction found − "
            "correction expected from the couch offset applied.",
            s["body"],
        ),
        _p("Scans", s["h2"]),
    ]
    head = ["Scanned", "Verdict", "Lat err", "Long err", "Vert err", "Roll err", "Noise", "Ack"]
    rows: list[list[object]] = [[_p(h, s["head"]) for h in head]]
    for day in days:
        errors = (
            ["—"] * 4
            if day.positioning is None
            else [f"{day.positioning.axes[i].error:+.2f}" for i in (0, 1, 2, 4)]
        )
        noise = "—" if day.image_figures is None else f"{day.image_figures.noise_hu:.1f}"
        ack = "" if day.acknowledged is None else day.acknowledged.printed_name
        scanned = day.scanned_at.astimezone().strftime("%Y-%m-%d %H:%M")
        cells = [scanned, day.verdict, *errors, noise, ack]
        rows.append([_p(str(c), s["cell"]) for c in cells])
    widths = [30 * mm, 26 * mm, 18 * mm, 18 * mm, 18 * mm, 18 * mm, 16 * mm, 36 * mm]
    story.append(_table(rows, widths))
    failures = [d for d in days if d.reasons and d.verdict != "passed"]
    if failures:
        story.append(_p("Findings", s["h2"]))
        for day in failures:
            when = day.scanned_at.astimezone().strftime("%Y-%m-%d")
            story.append(_p(f"{when} ({day.verdict}): " + "; ".join(day.reasons), s["small"]))
            if day.acknowledged is not None:
                by, note = day.acknowledged.printed_name, day.acknowledged.note
                story.append(_p(f"acknowledged by {by}: {note}", s["small"]))
    story.append(_p("Control charts (translations)", s["h2"]))
    for axis, (judged, chart) in charts(days, qa).items():
        if not axis.endswith("_mm"):
            continue
        labels = [d.scanned_at.astimezone().strftime("%m-%d") for d in judged]
        story.append(Image(io.BytesIO(_chart_png(axis, chart, labels)), 180 * mm, 50 * mm))
    buffer = io.BytesIO()
    SimpleDocTemplate(
        buffer, pagesize=A4, title=f"Daily imaging QA {qa.machine} {month}", author="mvct-guide"
    ).build(story)
    return buffer.getvalue()
