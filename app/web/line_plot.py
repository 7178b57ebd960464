"""Small inline SVG line charts (the style of :mod:`app.web.plot`): a course's anatomy trend and a
machine's QA control chart. Values in the SVG's ``<title>`` elements let a reader (and a test)
check every plotted figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 460, 160
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 24


@dataclass(frozen=True)
class Level:
    """A horizontal line: a tolerance or alert level (dashed) or a control limit (dotted)."""

    value: float
    label: str
    colour: str = "#c9a227"
    dash: str = "4 3"


@dataclass(frozen=True)
class Sample:
    label: str  #: x-axis label (fraction number, date)
    value: float
    flagged: bool = False  #: drawn as a red ring (alert, out of tolerance)
    current: bool = False  #: drawn larger


def line_svg(
    samples: Sequence[Sample],
    levels: Sequence[Level],
    *,
    unit: str,
    name: str,
    colour: str = "#3f88c5",
    css_id: str = "",
) -> str:
    """One series against its index, with horizontal levels; empty when nothing to plot."""
    if not samples:
        return ""
    peak = max([1.0, *(abs(s.value) for s in samples), *(abs(v.value) for v in levels)])
    y_limit = float(int(peak * 1.15) + 1)
    n = len(samples)

    def x(i: float) -> float:
        return LEFT + (i + 0.5) / n * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (y_limit - v) / (2 * y_limit) * (HEIGHT - TOP - BOTTOM)

    ident = f' id="{escape(css_id)}"' if css_id else ""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg"{ident} class="trend" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(name)}">',
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#888"/>',
    ]
    for level in levels:
        parts.append(
            f'<line class="level" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level.value):.1f}" '
            f'y2="{y(level.value):.1f}" stroke="{level.colour}" stroke-dasharray="{level.dash}">'
            f"<title>{escape(level.label)} {level.value:+.2f} {escape(unit)}</title></line>"
        )
    for value in (y_limit, 0.0, -y_limit):
        parts.append(
            f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#ccc">{value:+g}</text>'
        )
    parts.append(
        f'<text x="{LEFT - 4}" y="{HEIGHT - 6}" text-anchor="end" font-size="10" fill="#ccc">'
        f"{escape(unit)}</text>"
    )
    step = max(1, n // 12)
    for i, s in enumerate(samples):
        if i % step == 0 or i == n - 1:
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="9" '
                f'fill="#ccc">{escape(s.label)}</text>'
            )
    coords = " ".join(f"{x(i):.1f},{y(s.value):.1f}" for i, s in enumerate(samples))
    parts.append(
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
        f"<title>{escape(name)}</title></polyline>"
    )
    for i, s in enumerate(samples):
        ring = "#e4572e" if s.flagged else colour
        radius = 4.5 if s.current else 3.0
        css = "point flagged" if s.flagged else "point"
        parts.append(
            f'<circle class="{css}" cx="{x(i):.1f}" cy="{y(s.value):.1f}" r="{radius}" '
            f'fill="{colour}" stroke="{ring}" stroke-width="{2 if s.flagged else 1}"><title>'
            f"{escape(s.label)}: {s.value:+.2f} {escape(unit)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
