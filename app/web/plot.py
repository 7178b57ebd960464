"""A small inline SVG of a course's couch translations, so a drifting systematic error shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 420, 150
LEFT, RIGHT, TOP, BOTTOM = 36, 10, 10, 22
AXES = (
    ("lateral_mm", "lateral", "#e4572e"),
    ("longitudinal_mm", "longitudinal", "#29a35a"),
    ("vertical_mm", "vertical", "#3f88c5"),
)


@dataclass(frozen=True)
class Point:
    fraction_number: int
    correction: dict[str, float]
    rejected: bool = False
    current: bool = False


def translations_svg(points: Sequence[Point], margin_mm: float) -> str:
    """Lateral, longitudinal, vertical (mm) against fraction number, ±margin dashed."""
    if not points:
        return ""
    numbers = [p.fraction_number for p in points]
    x_low, x_high = min(numbers) - 0.5, max(numbers) + 0.5
    peak = max([margin_mm + 1.0, *(abs(p.correction[a]) for p in points for a, _, _ in AXES)])
    y_limit = float(int(peak) + 1)

    def x(n: float) -> float:
        return LEFT + (n - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (y_limit - v) / (2 * y_limit) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        'aria-label="couch translations by fraction">',
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#888"/>',
    ]
    for level in (margin_mm, -margin_mm):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            'stroke="#c9a227" stroke-dasharray="4 3"/>'
        )
    for value in (y_limit, 0.0, -y_limit):
        parts.append(
            f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#ccc">{value:+g}</text>'
        )
    parts.append(
        f'<text x="{LEFT - 4}" y="{HEIGHT - 6}" text-anchor="end" font-size="10" fill="#ccc">mm'
        "</text>"
    )
    for n in sorted(set(numbers)):
        parts.append(
            f'<text x="{x(n):.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="10" '
            f'fill="#ccc">{n}</text>'
        )
    for key, label, colour in AXES:
        coords = " ".join(f"{x(p.fraction_number):.1f},{y(p.correction[key]):.1f}" for p in points)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
            f"<title>{escape(label)}</title></polyline>"
        )
        for p in points:
            fill = "none" if p.rejected else colour
            radius = 4.5 if p.current else 2.5
            parts.append(
                f'<circle cx="{x(p.fraction_number):.1f}" cy="{y(p.correction[key]):.1f}" '
                f'r="{radius}" fill="{fill}" stroke="{colour}"><title>fraction '
                f"{p.fraction_number} {escape(label)} {p.correction[key]:+.2f} mm</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)
