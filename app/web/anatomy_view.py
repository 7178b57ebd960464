"""What the review page shows of the anatomy-change alert: this fraction's figures and the
course's trend (mean body-outline change and area change per fraction, with the alert levels)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.models import Fraction
from app.services.anatomy import (
    ALERT_WARNING,
    AnatomyEntry,
    course_anatomy,
    course_settings,
    figures_note,
)
from app.web.line_plot import Level, Sample, line_svg


@dataclass(frozen=True)
class AnatomyView:
    entry: AnatomyEntry | None  #: this fraction's (None: not measured)
    note: str | None  #: why it was not measured
    surface_svg: str
    area_svg: str
    warning: str = ALERT_WARNING


def anatomy_view(db: Session, fraction: Fraction) -> AnatomyView:
    entries = [e for e in course_anatomy(db, fraction.course_id)]
    settings = course_settings(db, fraction.course_id)
    mine = next((e for e in entries if e.fraction_id == fraction.id), None)
    upto = [e for e in entries if e.fraction_number <= fraction.fraction_number]

    def samples(attribute: str) -> list[Sample]:
        return [
            Sample(
                str(e.fraction_number),
                float(getattr(e.figures, attribute)),
                flagged=e.alert.alert,
                current=e.fraction_id == fraction.id,
            )
            for e in upto
        ]

    surface = settings.surface_change_mm
    area = settings.area_change_percent
    return AnatomyView(
        entry=mine,
        note=figures_note(db, fraction.id),
        surface_svg=line_svg(
            samples("mean_surface_mm"),
            [Level(surface, "alert level"), Level(-surface, "alert level")],
            unit="mm",
            name="mean body-outline change by fraction (negative: inward)",
            css_id="anatomy-surface-trend",
        ),
        area_svg=line_svg(
            samples("area_change_percent"),
            [Level(area, "alert level"), Level(-area, "alert level")],
            unit="%",
            name="body cross-section change by fraction",
            colour="#29a35a",
            css_id="anatomy-area-trend",
        ),
    )
