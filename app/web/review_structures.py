"""The course's structures on a fraction's review grid, for the contours the browser draws.

The rasterised masks of the course's RT Structure Set (:mod:`app.planning_cache`, made once by
the registration worker on the planning CT's grid) are resampled (nearest neighbour) onto the
review grid of :mod:`app.web.volumes` and packed one bit per structure into a little-endian
uint32 per voxel (array order k, j, i; at most :data:`MAX_STRUCTURES` structures are drawn),
gzip-compressed beside the review volumes. ``review.js`` draws each structure's outline as
planned on the planning CT and, on the MVCT, where today's anatomy of that structure is after
the couch moves by the correction on screen (``M_C⁻¹·M``, redrawn with every nudge).
``targets`` carries the PTV surface points (:func:`app.services.residuals.target_points`) from
which ``review.js`` recomputes the residual at the target with every nudge.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models_planning import PlanningObject
from app.jobs.planning_cache import CachedStructures
from app.services.residuals import course_structures, target_points
from app.web.volumes import ReviewVolumes

MAX_STRUCTURES = 32
#: used when the structure set gives no display colour
FALLBACK_COLOURS = ((0, 160, 255), (255, 128, 0), (160, 80, 255), (0, 200, 120))


def structures_for_review(
    ctx: ServiceContext, volumes: ReviewVolumes, fraction_id: int
) -> dict[str, Any]:
    """The structures' names, types, colours, shown-by-default flags, bits and mask file, and
    the targets' surface points."""
    grid = volumes.ensure(ctx, fraction_id)
    with ctx.sessions() as db:
        fraction = repo.fraction_by_id(db, fraction_id)
        if fraction is None or fraction.rtstruct_id is None:
            return {"structures": [], "url": None, "targets": []}
        rtstruct = db.get(PlanningObject, fraction.rtstruct_id)
        assert rtstruct is not None
        serial = fraction.course.serial_oar_name_parts
        name = f"structures-{rtstruct.content_sha256[:16]}.u32.gz"
        path = volumes.directory(grid["key"]) / name
        cached = None
        if not path.is_file():
            _, cached = course_structures(ctx.store, db, fraction)
        targets = target_points(ctx.store, db, fraction)
    if cached is not None:
        _write_bits(path, cached, grid)
    listed = json.loads(path.with_suffix(".json").read_text())
    structures = [
        {
            **item,
            "on": item["type"] == "PTV"
            or (
                item["type"] == "ORGAN"
                and any(part.casefold() in item["name"].casefold() for part in serial)
            ),
        }
        for item in listed
    ]
    url = f"/review/{fraction_id}/volumes/{grid['key']}/{name.removesuffix('.u32.gz')}.u32"
    return {"structures": structures, "url": url, "targets": targets}


def structures_path(volumes: ReviewVolumes, key: str, name: str) -> Path | None:
    if not name.startswith("structures-") or not all(c.isalnum() or c == "-" for c in name):
        return None
    path = volumes.directory(key) / f"{name}.u32.gz"
    return path if path.is_file() else None


def _write_bits(path: Path, cached: CachedStructures, grid: dict[str, Any]) -> None:
    reference = sitk.Image([int(n) for n in grid["size"]], sitk.sitkUInt8)
    reference.SetOrigin(grid["origin_mm"])
    reference.SetSpacing([grid["spacing_mm"]] * 3)
    bits = np.zeros(tuple(reversed([int(n) for n in grid["size"]])), dtype="<u4")
    listed = []
    for bit, structure in enumerate(cached.structures[:MAX_STRUCTURES]):
        mask = sitk.GetImageFromArray(structure.mask.astype(np.uint8))
        mask.CopyInformation(cached.grid)
        on_grid = sitk.Resample(
            mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
        bits |= (sitk.GetArrayViewFromImage(on_grid) > 0).astype("<u4") << np.uint32(bit)
        colour = structure.color_rgb or FALLBACK_COLOURS[bit % len(FALLBACK_COLOURS)]
        listed.append(
            {
                "name": structure.name,
                "type": structure.interpreted_type,
                "color": list(colour),
                "bit": bit,
            }
        )
    staging = path.with_name(f".{uuid.uuid4().hex}")
    with gzip.open(staging, "wb", compresslevel=1) as handle:
        handle.write(bits.tobytes())
    path.with_suffix(".json").write_text(json.dumps(listed))
    os.replace(staging, path)
