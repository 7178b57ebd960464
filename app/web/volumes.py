"""Compact review volumes: the planning CT and the MVCT on one small grid, made once per fraction.

The browser renders every view itself (``static/review.js``), so a nudge never waits for the
server. What it needs is prepared here once per fraction and cached on disk under
``<data_dir>/review-cache/<key>/``:

* the **grid**: axis-aligned in the DICOM patient frame (LPS), isotropic 1.5 mm (2 mm when the
  region is large), covering the MVCT (plus 10 mm) where the planning CT shows the body (plus
  15 mm), laid so that the plan isocentre is exactly a voxel centre (the views through the
  isocentre are grid slices);
* ``planning.i16.gz`` and ``mvct.i16.gz``: both series resampled onto that grid with SimpleITK
  (linear, identity transform: each at its own scanner coordinates), HU clipped to
  [-1024, 3071] as little-endian int16, gzip-compressed; MVCT voxels outside the MVCT are
  ``NO_DATA`` (-32768).

The browser then shows the MVCT "after correction" by sampling it at ``M_C·p`` for each planning
point ``p``, where ``M_C`` is :func:`registration.couch.correction_as_planning_to_daily` of the
correction shown (the image the patient would give after the couch moved by it); "before" samples
it at ``p``. Volumes are built in the data directory's ``tmp/`` and renamed into place, so a
cache entry is complete or absent.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Fraction, ImageSeries
from app.errors import NotFoundError

log = logging.getLogger(__name__)
CACHE_VERSION = 1
NO_DATA = -32768
HU_MIN, HU_MAX = -1024, 3071
FINE_SPACING_MM = 1.5
COARSE_SPACING_MM = 2.0
MAX_VOXELS = 2_400_000
MARGIN_MM = 10.0
VOLUME_NAMES = ("planning", "mvct")
PLANNINGS_KEPT = 4  #: planning CT images kept in memory (about 15-60 MB each)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box of voxel centres, LPS mm."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    @classmethod
    def of_series(cls, row: ImageSeries) -> Box:
        return cls(
            (row.min_x_mm, row.min_y_mm, row.min_z_mm), (row.max_x_mm, row.max_y_mm, row.max_z_mm)
        )

    def center(self) -> tuple[float, float, float]:
        return tuple((a + b) / 2 for a, b in zip(self.low, self.high, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Grid:
    """``point(i, j, k) = origin + spacing·(i, j, k)``, LPS mm, identity direction."""

    origin_mm: tuple[float, float, float]
    spacing_mm: float
    size: tuple[int, int, int]  #: (nx, ny, nz)
    isocenter_index: tuple[int, int, int]

    @property
    def voxels(self) -> int:
        return self.size[0] * self.size[1] * self.size[2]


def review_grid(
    planning: Box, mvct: Box, isocenter: Sequence[float], max_voxels: int = MAX_VOXELS
) -> Grid:
    """The grid around the MVCT where the planning CT has data (see the module docstring)."""
    low, high = [], []
    for axis in range(3):
        lo = max(mvct.low[axis] - MARGIN_MM, planning.low[axis])
        hi = min(mvct.high[axis] + MARGIN_MM, planning.high[axis])
        if hi <= lo:  # no overlap on this axis: show the MVCT's extent
            lo, hi = mvct.low[axis], mvct.high[axis]
        low.append(min(lo, isocenter[axis]))
        high.append(max(hi, isocenter[axis]))
    spacing = FINE_SPACING_MM
    if _count(low, high, isocenter, spacing) > max_voxels:
        spacing = COARSE_SPACING_MM
    while _count(low, high, isocenter, spacing) > max_voxels:  # shrink in-plane about iso
        for axis in (0, 1):
            low[axis] = isocenter[axis] - 0.9 * (isocenter[axis] - low[axis])
            high[axis] = isocenter[axis] + 0.9 * (high[axis] - isocenter[axis])
    before = [math.floor((isocenter[a] - low[a]) / spacing + 1e-6) for a in range(3)]
    after = [math.floor((high[a] - isocenter[a]) / spacing + 1e-6) for a in range(3)]
    origin = tuple(float(isocenter[a] - before[a] * spacing) for a in range(3))
    size = tuple(before[a] + after[a] + 1 for a in range(3))
    return Grid(origin, spacing, size, tuple(before))  # type: ignore[arg-type]


def _count(low: list[float], high: list[float], iso: Sequence[float], spacing: float) -> int:
    n = 1
    for a in range(3):
        n *= (
            math.floor((iso[a] - low[a]) / spacing + 1e-6)
            + math.floor((high[a] - iso[a]) / spacing + 1e-6)
            + 1
        )
    return n


def isocenter_of(fraction: Fraction) -> tuple[float, float, float]:
    """The plan isocentre the registration used, else the one asked for, else the MVCT centre."""
    if fraction.result is not None:
        iso = fraction.result.engine_result.isocenter_lps_mm
        return iso.x_mm, iso.y_mm, iso.z_mm
    if (asked := fraction.isocenter) is not None:
        return asked.x_mm, asked.y_mm, asked.z_mm
    return Box.of_series(fraction.mvct_series).center()


@dataclass(frozen=True)
class _Job:
    key: str
    planning: Box
    mvct: Box
    isocenter: tuple[float, float, float]
    planning_files: tuple[Path, ...]
    mvct_files: tuple[Path, ...]


class ReviewVolumes:
    """The on-disk cache of review volumes, one builder per key at a time."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._prefetching: set[int] = set()
        self._plannings: OrderedDict[str, Any] = OrderedDict()

    def directory(self, key: str) -> Path:
        return self.root / key

    def ensure(self, ctx: ServiceContext, fraction_id: int) -> dict[str, Any]:
        """The grid description of a fraction's volumes, building them if needed (~1 s)."""
        job = self._job(ctx, fraction_id)
        folder = self.directory(job.key)
        with self._guard:
            lock = self._locks.setdefault(job.key, threading.Lock())
        with lock:
            if not (folder / "grid.json").is_file():
                self._build(ctx, job, folder)
        grid: dict[str, Any] = json.loads((folder / "grid.json").read_text())
        return {"key": job.key, **grid}

    def volume_path(self, key: str, name: str) -> Path | None:
        if name not in VOLUME_NAMES or not _plain(key):
            return None
        path = self.directory(key) / f"{name}.i16.gz"
        return path if path.is_file() else None

    def prefetch(self, ctx: ServiceContext, fraction_ids: Sequence[int]) -> None:
        """Build missing volumes in the background (one thread), so the review opens at once."""
        with self._guard:
            todo = [f for f in fraction_ids if f not in self._prefetching]
            self._prefetching.update(todo)
        if todo:
            # not a daemon: the interpreter never stops under a thread inside SimpleITK; it
            # stops after the fraction in hand once the main thread has ended
            threading.Thread(
                target=self._prefetch, args=(ctx, todo), name="mvct-guide-review-prefetch"
            ).start()

    def _prefetch(self, ctx: ServiceContext, fraction_ids: list[int]) -> None:
        for fraction_id in fraction_ids:
            if not threading.main_thread().is_alive():
                return
            try:
                self.ensure(ctx, fraction_id)
            except Exception as exc:  # the page will say what is wrong when it is opened
                log.info("review volumes of fraction %d not prepared: %s", fraction_id, exc)
                with self._guard:
                    self._prefetching.discard(fraction_id)

    def _job(self, ctx: ServiceContext, fraction_id: int) -> _Job:
        with ctx.sessions() as db:
            fraction = repo.fraction_by_id(db, fraction_id)
            if fraction is None:
                raise NotFoundError(f"fraction {fraction_id} does not exist")
            planning = fraction.course.planning_series
            mvct = fraction.mvct_series
            iso = isocenter_of(fraction)
            at = "_".join(f"{round(v * 100):d}" for v in iso)
            key = f"{fraction.id}-{mvct.content_sha256[:12]}-{planning.content_sha256[:12]}-{at}"
            return _Job(
                key=f"{key}-v{CACHE_VERSION}",
                planning=Box.of_series(planning),
                mvct=Box.of_series(mvct),
                isocenter=iso,
                planning_files=tuple(ctx.store.series_files(planning.content_sha256)),
                mvct_files=tuple(ctx.store.series_files(mvct.content_sha256)),
            )

    def _build(self, ctx: ServiceContext, job: _Job, folder: Path) -> None:
        with ThreadPoolExecutor(1) as pool:  # read the MVCT while the planning CT is prepared
            mvct = pool.submit(read_series, job.mvct_files)
            planning = self._planning(job)
            body = body_box(planning, job.planning)
            grid = review_grid(body, job.mvct, job.isocenter)
            planning_voxels = resample(planning, grid, HU_MIN)
            mvct_voxels = resample(mvct.result(), grid, NO_DATA)
        work = ctx.store.new_tmp_dir("review")
        try:
            _write(work / "planning.i16.gz", planning_voxels)
            _write(work / "mvct.i16.gz", mvct_voxels)
            (work / "grid.json").write_text(json.dumps(asdict(grid)))
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._evict()

    def _planning(self, job: _Job) -> Any:
        """The planning CT image, read once for the fractions of a course (a few kept)."""
        key = job.planning_files[0].parent.name if job.planning_files else ""
        with self._guard:
            image = self._plannings.get(key)
            if image is not None:
                self._plannings.move_to_end(key)
                return image
        image = read_series(job.planning_files)
        with self._guard:
            self._plannings[key] = image
            while len(self._plannings) > PLANNINGS_KEPT:
                self._plannings.popitem(last=False)
        return image

    def forget(self, keep_plannings: bool = False) -> None:
        """Drop what was prepared (benchmarks of the cold path)."""
        with self._guard:
            if not keep_plannings:
                self._plannings.clear()
            self._prefetching.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _evict(self) -> None:
        entries = sorted(
            (p for p in self.root.iterdir() if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in entries[self.keep :]:
            shutil.rmtree(old, ignore_errors=True)


def read_series(files: Sequence[Path]) -> Any:
    """A stored series as a SimpleITK image in HU (LPS)."""
    from registration.dicom_series import read_ct_series

    if not files:
        raise NotFoundError("the stored image files of this fraction are missing")
    return read_ct_series(list(files)).image


def body_box(planning: Any, extent: Box, threshold_hu: float = -400.0) -> Box:
    """The planning CT's extent cut to the body (voxels above ``threshold_hu``) plus 15 mm:
    the air around the patient is not worth sending to the browser."""
    import SimpleITK as sitk

    small = sitk.BinShrink(planning, [4, 4, 2])
    above = np.argwhere(sitk.GetArrayViewFromImage(small) > threshold_hu)
    if len(above) == 0:
        return extent
    corners = [
        small.TransformContinuousIndexToPhysicalPoint([float(v) for v in index[::-1]])
        for index in (above.min(axis=0) - 1, above.max(axis=0) + 1)
    ]
    low = np.maximum(np.minimum(*corners) - 15.0, extent.low)
    high = np.minimum(np.maximum(*corners) + 15.0, extent.high)
    return Box(tuple(low.tolist()), tuple(high.tolist()))


def resample(image: Any, grid: Grid, outside: int) -> np.ndarray:
    """``image`` on ``grid`` as int16 HU, array index order (k, j, i); ``outside`` off the image."""
    import SimpleITK as sitk

    reference = sitk.Image([int(n) for n in grid.size], sitk.sitkFloat32)
    reference.SetOrigin(grid.origin_mm)
    reference.SetSpacing([grid.spacing_mm] * 3)
    resampled = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkLinear, float(outside), sitk.sitkFloat32
    )
    values = sitk.GetArrayFromImage(resampled)
    clipped = np.clip(np.rint(values), HU_MIN, HU_MAX).astype(np.int16)
    if outside == NO_DATA:
        clipped[values == float(NO_DATA)] = NO_DATA
    result: np.ndarray = clipped
    return result


def _write(path: Path, voxels: np.ndarray) -> None:
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(voxels.astype("<i2").tobytes())


def _plain(key: str) -> bool:
    return bool(key) and len(key) < 120 and all(c.isalnum() or c in "-_." for c in key)
