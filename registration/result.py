"""What a registration is asked to do and what it answers, as plain frozen data.

``RegistrationResult.to_dict()`` is the JSON contract shared by the command line (``--json``), the
HTTP API and the database; its field names are those of the user documentation.
``RegistrationResult.from_dict()`` reads it back: ``from_dict(d).to_dict() == d`` for every
``d`` that ``to_dict`` wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum, unique
from typing import Any

import SimpleITK as sitk

from registration.couch import CouchCorrection, Dof
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps


@unique
class Mode(StrEnum):
    """Which anatomy drives the match."""

    BONE = "bone"  #: bone only (planning CT above ~+200 HU, dilated)
    TISSUE = "tissue"  #: bone and soft tissue (body outline, air excluded)
    FULL = "full"  #: the whole field of view


@dataclass(frozen=True, slots=True)
class SphereRoi:
    """A spherical region of interest around a centre (planning LPS mm)."""

    center: LpsPoint
    radius_mm: float


@dataclass(frozen=True, slots=True)
class BoxRoi:
    """An axis-aligned box of region of interest (planning LPS mm), half-sizes along x, y, z."""

    center: LpsPoint
    half_size_x_mm: float
    half_size_y_mm: float
    half_size_z_mm: float


Roi = SphereRoi | BoxRoi


@dataclass(frozen=True, slots=True)
class RegistrationOptions:
    """How to register. ``isocenter`` None means the centre of the daily (MVCT) volume.

    ``roi`` and ``planning_region`` are defined in the PLANNING frame (LPS mm; the region a
    non-zero mask on the planning CT's grid, e.g. a structure plus a margin); the match uses only
    MVCT voxels whose position, mapped by the current planning→daily estimate, falls inside both.
    """

    isocenter: LpsPoint | None = None
    dof: Dof = Dof.SIX
    mode: Mode = Mode.TISSUE
    roi: Roi | None = None
    planning_region: sitk.Image | None = field(default=None, compare=False)
    #: run an independent second estimate and mark the result untrusted when they disagree
    second_opinion: bool = True
    #: seed for elastix's random sampler; fixed so the same images always give the same answer
    random_seed: int = 121212


@dataclass(frozen=True, slots=True)
class RegistrationQuality:
    """How well the optimiser did; read by ``trusted`` and shown to the reviewer."""

    final_metric: float  #: mutual information (nats) at the final alignment; higher is better
    overlap_fraction: float  #: fraction of the masked daily volume that the planning CT covers
    iterations: int  #: iterations summed over resolutions
    seconds: float  #: wall time of the registration itself (images in memory)
    second_estimate_disagreement_mm: float | None = None  #: max distance in a 50 mm sphere
    converged: bool = True


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """The answer of :func:`registration.rigid.register`.

    ``planning_to_daily_lps``: the anatomy at planning-CT point p (LPS mm) is at M·p in the MVCT.
    ``couch_correction`` is what the couch with ``dof`` degrees of freedom should apply;
    ``couch_correction_6dof`` keeps all six values whatever ``dof`` is.
    """

    planning_to_daily_lps: RigidTransformLps
    couch_correction: CouchCorrection
    couch_correction_6dof: CouchCorrection
    isocenter_lps_mm: LpsPoint
    patient_position: PatientPosition
    dof: Dof
    mode: Mode
    quality: RegistrationQuality
    trusted: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)
    engine_version: str = ""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RegistrationResult:
        """The result that :meth:`to_dict` wrote (values as rounded there)."""
        q = values["quality"]
        disagreement = q.get("second_estimate_disagreement_mm")
        return cls(
            planning_to_daily_lps=RigidTransformLps.from_array(values["planning_to_daily_lps"]),
            couch_correction=CouchCorrection.from_dict(values["couch_correction"]),
            couch_correction_6dof=CouchCorrection.from_dict(values["couch_correction_6dof"]),
            isocenter_lps_mm=LpsPoint.from_array(values["isocenter_lps_mm"]),
            patient_position=PatientPosition(values["patient_position"]),
            dof=Dof(int(values["dof"])),
            mode=Mode(values["mode"]),
            quality=RegistrationQuality(
                final_metric=float(q["final_metric"]),
                overlap_fraction=float(q["overlap_fraction"]),
                iterations=int(q["iterations"]),
                seconds=float(q["seconds"]),
                second_estimate_disagreement_mm=(
                    None if disagreement is None else float(disagreement)
                ),
                converged=bool(q.get("converged", True)),
            ),
            trusted=bool(values["trusted"]),
            warnings=tuple(str(w) for w in values.get("warnings", ())),
            engine_version=str(values.get("engine_version", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (plain types only), rounded to what is meaningful (0.01 mm / 0.01°)."""
        q = self.quality
        return {
            "planning_to_daily_lps": [
                [round(v, 6) for v in row] for row in self.planning_to_daily_lps.matrix
            ],
            "couch_correction": self.couch_correction.rounded().as_dict(),
            "couch_correction_6dof": self.couch_correction_6dof.rounded().as_dict(),
            "isocenter_lps_mm": [
                round(self.isocenter_lps_mm.x_mm, 3),
                round(self.isocenter_lps_mm.y_mm, 3),
                round(self.isocenter_lps_mm.z_mm, 3),
            ],
            "patient_position": self.patient_position.value,
            "dof": int(self.dof),
            "mode": self.mode.value,
            "quality": {
                "final_metric": round(q.final_metric, 6),
                "overlap_fraction": round(q.overlap_fraction, 4),
                "iterations": q.iterations,
                "seconds": round(q.seconds, 3),
                "second_estimate_disagreement_mm": (
                    None
                    if q.second_estimate_disagreement_mm is None
                    else round(q.second_estimate_disagreement_mm, 3)
                ),
                "converged": q.converged,
            },
            "trusted": self.trusted,
            "warnings": list(self.warnings),
            "engine_version": self.engine_version,
        }
