"""A course's structures rasterised once, kept on disk beside its prepared planning CT.

``<data_dir>/planning-cache/<planning sha256>/`` holds what is made once per planning CT: the
prepared planning CT (``prepared-<key>/``, :mod:`registration.prepared_file`) and the structures.

``<data_dir>/planning-cache/<planning sha256>/<rtstruct sha256>.npz`` holds every ROI's mask on
the planning CT's grid (bit-packed), its name, type and colour, and the grid itself (size,
spacing, origin, direction). The registration worker writes it the first time a fraction of the
course registers (it has the planning CT in memory then); the review page and the residuals of
a signed correction read it, so no request rasterises. Written to a temporary name and renamed,
so a reader sees a whole file or none; a file that cannot be read is rebuilt.

:func:`sweep_unreferenced` (every ``disk_sweep_s``, :mod:`app.lifecycle`) removes the folders of
planning CTs no ``image_series`` or ``planning_objects`` row names (the service deletes no such
row; a database re-created or restored from an older backup under the same data directory leaves
such folders). A folder in which anything changed within the last hour — a staging folder or file
being written included — is spared, as :mod:`registration.prepared_file` spares its staging
folders for an hour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from sqlalchemy.orm import Session, sessionmaker

from app.db import repository as repo
from app.db.models_planning import PlanningObject
from app.storage import ImageStore
from registration.frames import FloatArray
from registration.rt_raster import BoolArray, rasterize_structure, surface_points_lps_mm
from registration.rtstruct import StructureSet

log = logging.getLogger(__name__)

CACHE_DIR_NAME = "planning-cache"
#: a folder changed more recently than this may still be being written: the sweep spares it
UNREFERENCED_MIN_AGE_S = 3600.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REMOVING = ".removing-"


@dataclass(frozen=True, eq=False)
class CachedStructure:
    name: str
    interpreted_type: str
    color_rgb: tuple[int, int, int] | None
    mask: BoolArray  #: [k, j, i] on the planning grid


@dataclass(frozen=True, eq=False)
class CachedStructures:
    """The rasterised structures of one structure set on one planning CT."""

    grid: sitk.Image  #: geometry only (an empty image of the planning CT's size and place)
    structures: tuple[CachedStructure, ...]

    def surface_points(self, structure: CachedStructure) -> FloatArray:
        return surface_points_lps_mm(structure.mask, self.grid)


def cache_file(cache_root: Path, planning_sha256: str, rtstruct_sha256: str) -> Path:
    return cache_root / planning_sha256 / f"{rtstruct_sha256}.npz"


def build(structure_set: StructureSet, planning: sitk.Image) -> CachedStructures:
    """Rasterise every ROI of ``structure_set`` on the planning CT's grid (the core's rule)."""
    structures = tuple(
        CachedStructure(s.name, s.interpreted_type, s.color_rgb, rasterize_structure(s, planning))
        for s in structure_set.structures
    )
    return CachedStructures(_geometry(planning), structures)


def save(path: Path, cached: CachedStructures) -> None:
    grid = cached.grid
    meta = {
        "size": list(grid.GetSize()),
        "spacing": list(grid.GetSpacing()),
        "origin": list(grid.GetOrigin()),
        "direction": list(grid.GetDirection()),
        "structures": [
            {
                "name": s.name,
                "type": s.interpreted_type,
                "color": None if s.color_rgb is None else list(s.color_rgb),
            }
            for s in cached.structures
        ],
    }
    arrays = {f"mask_{n}": np.packbits(s.mask, axis=None) for n, s in enumerate(cached.structures)}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}-{uuid.uuid4().hex}.npz")
    try:
        np.savez_compressed(staging, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds loosely
        os.replace(staging, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def load(path: Path) -> CachedStructures | None:
    """The cached structures, or None when the file is absent or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            size = [int(v) for v in meta["size"]]
            count = size[0] * size[1] * size[2]
            shape = (size[2], size[1], size[0])
            structures = tuple(
                CachedStructure(
                    item["name"],
                    item["type"],
                    None if item["color"] is None else tuple(item["color"]),
                    np.unpackbits(data[f"mask_{n}"], count=count).astype(bool).reshape(shape),
                )
                for n, item in enumerate(meta["structures"])
            )
    except (OSError, KeyError, ValueError):
        return None
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(meta["spacing"])
    grid.SetOrigin(meta["origin"])
    grid.SetDirection(meta["direction"])
    return CachedStructures(grid, structures)


def _geometry(image: sitk.Image) -> sitk.Image:
    grid = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    grid.CopyInformation(image)
    return grid


def prepared_root(store: ImageStore, planning_sha256: str) -> Path:
    """The folder of what is made once for the planning CT ``planning_sha256``."""
    return store.root.parent / CACHE_DIR_NAME / planning_sha256


def structures_cache_file(store: ImageStore, planning_sha256: str, rtstruct_sha256: str) -> Path:
    """Where the course's rasterised structures are kept (:mod:`app.planning_cache`)."""
    return cache_file(store.root.parent / CACHE_DIR_NAME, planning_sha256, rtstruct_sha256)


def expected_file(store: ImageStore, obj: PlanningObject) -> Path:
    """The stored file of ``obj`` (a path that does not exist when it went missing)."""
    files = store.series_files(obj.content_sha256)
    return files[0] if files else store.series_dir(obj.content_sha256) / "missing.dcm"


def sweep_unreferenced(
    store: ImageStore,
    sessions: sessionmaker[Session],
    min_age_s: float = UNREFERENCED_MIN_AGE_S,
) -> list[str]:
    """Remove the cache folders of planning CTs no row names (module docstring); their hashes."""

    def referenced() -> set[str]:
        with sessions() as session:
            return repo.all_series_hashes(session)

    removed = sweep(store.root.parent / CACHE_DIR_NAME, referenced, min_age_s)
    if removed:
        log.info("planning cache: removed %d folder(s) no row names any more", len(removed))
    return removed


def sweep(
    cache_root: Path, referenced: Callable[[], set[str]], min_age_s: float, now: float | None = None
) -> list[str]:
    """Remove the folders under ``cache_root`` named by a hash not in ``referenced()`` whose
    contents all changed over ``min_age_s`` ago; the hashes removed.

    The folders are listed before ``referenced`` is read: a folder is made only for a planning CT
    whose row has committed, so a folder listed has its row in what is read next. A folder is
    renamed away before it is deleted, so a reader sees it whole or not at all.
    """
    if not cache_root.is_dir():
        return []
    for leftover in cache_root.glob(f"{_REMOVING}*"):  # a sweep that died while deleting
        shutil.rmtree(leftover, ignore_errors=True)
    folders = [p for p in cache_root.iterdir() if p.is_dir() and _SHA256.fullmatch(p.name)]
    if not folders:
        return []
    known = referenced()
    cutoff = (time.time() if now is None else now) - min_age_s
    removed = []
    for folder in sorted(folders):
        if folder.name in known or _newest_change(folder) > cutoff:
            continue
        doomed = cache_root / f"{_REMOVING}{folder.name}-{uuid.uuid4().hex}"
        try:
            os.rename(folder, doomed)
        except OSError:  # removed meanwhile (another replica's sweep)
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(folder.name)
    return removed


def _newest_change(folder: Path) -> float:
    """The latest modification time of ``folder`` and of everything in it (inf if unreadable)."""
    try:
        newest = folder.stat().st_mtime
        for parent, names, files in os.walk(folder):
            for name in (*names, *files):
                newest = max(newest, os.stat(os.path.join(parent, name)).st_mtime)
    except OSError:  # something changed under our feet: someone is writing
        return float("inf")
    return newest
