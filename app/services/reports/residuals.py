"""What was left at the target and the organs at risk, over the report's fractions.

Each registered fraction stores, per structure of its course's RT Structure Set, the residual
displacement of the structure's surface after the couch applied the correction it can apply
(``max_mm``, ``p95_mm``: :mod:`registration.residuals`). The report summarises the per-fraction
``max_mm`` of the fractions that count in the statistics:

* per patient and structure: fractions, mean and largest ``max_mm``;
* over the population, for the PTV (every PTV-type structure, or the 50 mm isocentre sphere of
  a course without one) and for each organ at risk (type ORGAN, by name, case-insensitive):
  patients, fractions, mean, 95th percentile (linear interpolation) and largest ``max_mm``.

Per fraction (the CSV's ``ptv_residual_*`` columns), :func:`worst_ptv` names the PTV-group
structure with the largest ``max_mm`` and gives its ``max_mm`` and ``p95_mm``.

Part (b) of the three-part statistics (:mod:`registration.stats_parts`) for a fraction without a
verification scan is what the machine could not correct; when the fraction's course has
structures, :func:`summarise_part_b_ptv` adds the residual at the PTV of the couch's applied
correction: per fraction the worst PTV-group ``max_mm`` (:func:`worst_ptv`), summarised per
patient and over the population as above (one group, ``"PTV"``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from registration.residuals import ISOCENTER_SPHERE_TYPE


@dataclass(frozen=True, slots=True)
class StructureResidualRow:
    """One structure of one fraction (mm)."""

    structure: str
    interpreted_type: str
    max_mm: float
    p95_mm: float


@dataclass(frozen=True, slots=True)
class PatientResidual:
    patient_id: str
    structure: str
    interpreted_type: str
    fractions: int
    mean_max_mm: float
    largest_max_mm: float


@dataclass(frozen=True, slots=True)
class PopulationResidual:
    group: str  #: "PTV" or the organ's name
    patients: int
    fractions: int
    mean_max_mm: float
    p95_max_mm: float
    largest_max_mm: float


@dataclass(frozen=True, slots=True)
class ResidualSummary:
    patients: tuple[PatientResidual, ...] = ()
    population: tuple[PopulationResidual, ...] = ()


def summarise_residuals(
    rows: Sequence[tuple[str, Sequence[StructureResidualRow]]],
) -> ResidualSummary:
    """``rows``: (patient id, residuals of one counted fraction) — see the module docstring."""
    per_patient: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    per_group: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for patient_id, residuals in rows:
        for r in residuals:
            per_patient[(patient_id, r.structure, r.interpreted_type)].append(r.max_mm)
            group = _group(r)
            if group is not None:
                per_group[group].append((patient_id, r.max_mm))
    patients = tuple(
        PatientResidual(pid, name, kind, len(v), float(np.mean(v)), float(np.max(v)))
        for (pid, name, kind), v in sorted(per_patient.items())
    )
    population = tuple(
        PopulationResidual(
            group,
            len({pid for pid, _ in values}),
            len(values),
            float(np.mean([v for _, v in values])),
            float(np.percentile([v for _, v in values], 95)),
            float(np.max([v for _, v in values])),
        )
        for group, values in sorted(per_group.items(), key=lambda kv: (kv[0] != "PTV", kv[0]))
    )
    return ResidualSummary(patients, population)


def _group(residual: StructureResidualRow) -> str | None:
    if residual.interpreted_type in ("PTV", ISOCENTER_SPHERE_TYPE):
        return "PTV"
    if residual.interpreted_type == "ORGAN":
        return residual.structure.strip().casefold()
    return None


def worst_ptv(residuals: Sequence[StructureResidualRow]) -> StructureResidualRow | None:
    """The PTV-group structure (PTV type, or the isocentre sphere) with the largest ``max_mm``."""
    ptv = [r for r in residuals if _group(r) == "PTV"]
    return max(ptv, key=lambda r: r.max_mm) if ptv else None


def summarise_part_b_ptv(
    rows: Sequence[tuple[str, Sequence[StructureResidualRow]]],
) -> ResidualSummary:
    """``rows``: (patient id, residuals) of the fractions whose part (b) is the machine's;
    fractions without a PTV-group structure are left out (module docstring)."""
    worst = [(pid, worst_ptv(residuals)) for pid, residuals in rows]
    return summarise_residuals(
        [
            (pid, [StructureResidualRow("PTV", "PTV", w.max_mm, w.p95_mm)])
            for pid, w in worst
            if w is not None
        ]
    )
