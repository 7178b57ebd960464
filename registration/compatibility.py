"""Whether a daily MVCT can be registered to a planning CT at all: one rule, stated once.

Two series are compatible when

* the patient lies the same way in both (DICOM Patient Position (0018,5100)): the couch
  correction is expressed in IEC 61217 table axes for *one* position, so a head-first MVCT
  cannot be matched to a feet-first plan (:mod:`registration.frames`);
* the planning CT covers at least :data:`MIN_Z_COVERAGE` of the MVCT's extent along the patient
  axis (LPS z, voxel centres): the optimiser needs shared anatomy, and a daily scan mostly
  outside the plan means the wrong planning CT was chosen.

The engine (:func:`registration.rigid.register`) and the service's ingest, which checks before
anything is stored, both call :func:`check_compatible`.

>>> from registration.frames import PatientPosition
>>> plan = SeriesExtent(PatientPosition.HFS, -100.0, 100.0)
>>> check_compatible(SeriesExtent(PatientPosition.HFS, 0.0, 50.0), plan)
>>> try:
...     check_compatible(SeriesExtent(PatientPosition.FFS, 0.0, 50.0), plan)
... except IncompatibleSeriesError as error:
...     print(str(error).split(":")[0])
the MVCT was taken FFS but the planning CT is HFS
>>> z_coverage_mm(SeriesExtent(PatientPosition.HFS, 80.0, 120.0), plan)
20.0
"""

from __future__ import annotations

from dataclasses import dataclass

from registration.errors import InputError
from registration.frames import PatientPosition

#: the fraction of the MVCT's z extent the planning CT must cover
MIN_Z_COVERAGE = 0.5


class IncompatibleSeriesError(InputError):
    """The MVCT and the planning CT differ in patient position or barely overlap."""


@dataclass(frozen=True, slots=True)
class SeriesExtent:
    """What the rule needs of a series: how the patient lay and its z range (LPS mm)."""

    patient_position: PatientPosition
    min_z_mm: float
    max_z_mm: float


def z_coverage_mm(daily: SeriesExtent, planning: SeriesExtent) -> float:
    """Length (mm) of the daily z range that lies inside the planning z range."""
    return max(0.0, min(planning.max_z_mm, daily.max_z_mm) - max(planning.min_z_mm, daily.min_z_mm))


def check_compatible(daily: SeriesExtent, planning: SeriesExtent) -> None:
    """Raise :class:`IncompatibleSeriesError` unless ``daily`` can be registered to ``planning``."""
    if daily.patient_position is not planning.patient_position:
        raise IncompatibleSeriesError(
            f"the MVCT was taken {daily.patient_position.value} but the planning CT is "
            f"{planning.patient_position.value}: the patient position must be the same; check "
            "the set-up or the chosen planning CT"
        )
    if z_coverage_mm(daily, planning) < MIN_Z_COVERAGE * (daily.max_z_mm - daily.min_z_mm):
        raise IncompatibleSeriesError(
            f"the planning CT (z {planning.min_z_mm:.0f} to {planning.max_z_mm:.0f} mm) does not "
            f"cover the MVCT (z {daily.min_z_mm:.0f} to {daily.max_z_mm:.0f} mm): check that the "
            "right planning CT was chosen"
        )


__all__ = [
    "MIN_Z_COVERAGE",
    "IncompatibleSeriesError",
    "SeriesExtent",
    "check_compatible",
    "z_coverage_mm",
]
