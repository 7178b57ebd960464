"""The PDF and HTML reports, read back as text (pypdf, html.parser) and checked against values
computed here with numpy from hand-made shifts."""

from __future__ import annotations

import datetime
import io
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pypdf
import pytest

from app.services.reports import (
    FractionRow,
    Report,
    ReportContext,
    ReportPeriod,
    build_report,
    render_figures,
    to_html,
    to_pdf,
)

WEEK = ReportPeriod.iso_week("2026-W48")  # 23–29 Nov 2026
GENERATED_AT = datetime.datetime(2026, 11, 30, 7, 0, tzinfo=datetime.UTC)
CONTEXT = ReportContext(period=WEEK, generated_at=GENERATED_AT, generated_by="A. Physicist")

# Three patients (too few for a verdict); P2's first three lateral shifts average 5 mm (a NAL
# warning). Lateral: m = 2, 5, -1 → M = 2, Σ = 3; s = 1, 2, 2 → σ = √3 ≈ 1.73.
FEW_LATERAL_MM = {"P1": [1.0, 2.0, 3.0], "P2": [3.0, 5.0, 7.0], "<script>": [-4.0, 0.0, 0.0, 0.0]}
# Twelve patients of three fractions: lateral m_p = k − 5.5, s_p = 1 (Σ ≈ 3.61: not adequate);
# longitudinal small (adequate); vertical zero.
MANY_LATERAL_MM = {f"Q{k:02d}": [k - 5.5 + d for d in (-1.0, 0.0, 1.0)] for k in range(12)}
MANY_LONGITUDINAL_MM = {
    f"Q{k:02d}": [0.1 * (k % 3) + 0.2 * d for d in (-1.0, 0.0, 1.0)] for k in range(12)
}


def rows_of(
    lateral_mm: dict[str, list[float]], longitudinal_mm: dict[str, list[float]] | None = None
) -> list[FractionRow]:
    rows = []
    for patient_id, shifts in lateral_mm.items():
        for i, lateral in enumerate(shifts):
            day = WEEK.start + datetime.timedelta(days=i)
            rows.append(
                FractionRow(
                    patient_id=patient_id,
                    course_id="C1",
                    site="head and neck",
                    fraction_number=i + 1,
                    fraction_date=day,
                    acquired_at=datetime.datetime.combine(day, datetime.time(8), datetime.UTC),
                    lateral_mm=lateral,
                    longitudinal_mm=longitudinal_mm[patient_id][i] if longitudinal_mm else 0.0,
                    vertical_mm=0.0,
                    pitch_deg=0.0,
                    roll_deg=0.1 * i,
                    yaw_deg=0.0,
                    trusted=True,
                    decision=None,
                    signed_by=None,
                    signed_at=None,
                )
            )
    return rows


def expected_population(shifts: dict[str, list[float]]) -> tuple[float, float, float]:
    """(M, Σ, σ) by the textbook definitions, independently of the code under test."""
    means = np.array([np.mean(v) for v in shifts.values()])
    sds = np.array([np.std(v, ddof=1) for v in shifts.values()])
    return float(means.mean()), float(np.std(means, ddof=1)), float(np.sqrt(np.mean(sds**2)))


@pytest.fixture(scope="module")
def few() -> Report:
    return build_report(rows_of(FEW_LATERAL_MM), CONTEXT, bootstrap_resamples=200)


@pytest.fixture(scope="module")
def many() -> Report:
    rows = rows_of(MANY_LATERAL_MM, MANY_LONGITUDINAL_MM)
    return build_report(rows, CONTEXT, bootstrap_resamples=200)


def pdf_pages(data: bytes) -> list[str]:
    assert data.startswith(b"%PDF-")
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


@pytest.fixture(scope="module")
def many_pdf(many: Report) -> list[str]:
    return pdf_pages(to_pdf(many))


@pytest.fixture(scope="module")
def few_pdf(few: Report) -> list[str]:
    return pdf_pages(to_pdf(few))


# --- PDF ---------------------------------------------------------------------------------------


def test_every_pdf_page_carries_the_date_range_and_page_i_of_n(many_pdf: list[str]) -> None:
    n = len(many_pdf)
    assert n >= 3  # population, figures, time series, tables
    for i, text in enumerate(many_pdf, start=1):
        assert "2026-W48 (23–29 Nov 2026)" in text, f"page {i}"
        assert f"Page {i} of {n}" in text, f"page {i}"


def test_the_pdf_population_table_shows_m_sigma_and_sigma_of_a_known_data_set(
    few_pdf: list[str],
) -> None:
    m, big_sigma, small_sigma = expected_population(FEW_LATERAL_MM)
    assert (round(m, 2), round(big_sigma, 2), round(small_sigma, 2)) == (2.0, 3.0, 1.73)
    first_page = few_pdf[0]
    lateral = re.search(r"Lateral \(X\) \[mm\](.*?)Longitudinal", first_page, re.DOTALL)
    assert lateral is not None
    numbers = lateral.group(1).split()
    assert numbers[:5] == ["3", "(3)", f"{m:+.2f}", f"{big_sigma:.2f}", f"{small_sigma:.2f}"]
    assert f"{2.5 * big_sigma + 0.7 * small_sigma:.2f}" == numbers[5]
    assert "too few patients (< 10)" in " ".join(first_page.split())


def test_the_pdf_states_which_axes_need_a_larger_margin(many_pdf: list[str]) -> None:
    _, lateral_sigma, lateral_rms = expected_population(MANY_LATERAL_MM)
    _, longitudinal_sigma, longitudinal_rms = expected_population(MANY_LONGITUDINAL_MM)
    assert 2.5 * lateral_sigma + 0.7 * lateral_rms > 3.0  # lateral: not adequate
    assert 2.5 * longitudinal_sigma + 0.7 * longitudinal_rms < 3.0  # longitudinal: adequate
    text = many_pdf[0]
    lateral = text[text.index("Lateral (X) [mm]") : text.index("Longitudinal (Y)")]
    longitudinal = text[text.index("Longitudinal (Y)") : text.index("Vertical (Z) [mm]")]
    assert lateral.rstrip().endswith("not adequate")
    assert longitudinal.rstrip().endswith("adequate") and "not" not in longitudinal
    assert f"{2.5 * lateral_sigma + 0.7 * lateral_rms:.2f}" in lateral


def test_the_pdf_lists_the_early_warnings(few_pdf: list[str]) -> None:
    text = " ".join(" ".join(few_pdf).split())
    assert "Early warnings" in text
    assert "P2 / C1 first fractions (NAL) lateral +5.00 ±2.0 3" in text


def test_the_pdf_ends_with_definitions_and_their_sources(few_pdf: list[str]) -> None:
    text = " ".join(" ".join(few_pdf).split())
    assert "van Herk et al., IJROBP 2000;47:1121" in text
    assert "Stroom et al., IJROBP 1999;43:905" in text


def test_an_empty_week_gives_a_valid_pdf_saying_there_were_no_fractions() -> None:
    pages = pdf_pages(to_pdf(build_report([], CONTEXT)))
    text = " ".join(pages)
    assert "No fractions in 2026-W48 (23–29 Nov 2026)." in text
    assert "No early warnings." in text and "No patients." in text
    assert f"Page 1 of {len(pages)}" in pages[0]


# --- HTML --------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.image_sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.image_sources.append(dict(attrs).get("src") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def test_the_html_page_escapes_patient_ids_and_runs_no_script(few: Report) -> None:
    page = to_html(few)
    assert "<script>" not in page and "&lt;script&gt; / C1" in page
    parsed = parse(page)
    assert "script" not in parsed.tags
    assert "<script> / C1" in parsed.text  # shown as text


def test_the_html_page_holds_the_population_values_and_inline_figures(few: Report) -> None:
    m, big_sigma, small_sigma = expected_population(FEW_LATERAL_MM)
    parsed = parse(to_html(few))
    cells = [t.strip() for t in parsed.text if t.strip()]
    lateral = cells.index("Lateral (X) [mm]")
    assert cells[lateral + 1 : lateral + 5] == [
        "3 (3)",
        f"{m:+.2f}",
        f"{big_sigma:.2f}",
        f"{small_sigma:.2f}",
    ]
    assert "too few patients (< 10)" in cells
    assert len(parsed.image_sources) >= 3
    assert all(src.startswith("data:image/png;base64,") for src in parsed.image_sources)


def test_an_empty_html_page_says_there_were_no_fractions() -> None:
    parsed = parse(to_html(build_report([], CONTEXT)))
    text = " ".join(" ".join(parsed.text).split())
    assert "No fractions in 2026-W48 (23–29 Nov 2026)." in text
    assert "No fractions: nothing to plot." in text
    assert parsed.image_sources == []


# --- figures -----------------------------------------------------------------------------------


def test_time_series_beyond_the_cap_are_left_out_and_the_caption_says_so(many: Report) -> None:
    figures = render_figures(many, max_patients=5)
    assert len(figures.time_series_pngs) == 2  # rows of 4 panels: 4 + 1
    assert all(png.startswith(b"\x89PNG") for png in figures.time_series_pngs)
    assert "Showing the 5 of 12 patients with the largest mean 3D shift" in (
        figures.time_series_caption
    )
    assert "Showing" not in render_figures(many).time_series_caption


def test_rendering_uses_neither_pyplot_nor_the_global_backend() -> None:
    script = (
        "import sys, matplotlib, app.services.reports\n"
        "assert 'matplotlib.figure' not in sys.modules, 'matplotlib imported eagerly'\n"
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')  # unresolved, as set\n"
        "from test_reports_documents import CONTEXT, FEW_LATERAL_MM, rows_of\n"
        "reports = app.services.reports\n"
        "reports.to_pdf(reports.build_report(rows_of(FEW_LATERAL_MM), CONTEXT))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend, 'backend set'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=__file__.rsplit("/", 1)[0],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_same_report_renders_the_same_pdf_bytes(few: Report) -> None:
    figures = render_figures(few)
    assert to_pdf(few, figures=figures) == to_pdf(few, figures=figures)
