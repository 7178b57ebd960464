"""One coarse-to-fine chain of elastix runs, and the masks and probe it works with.

:func:`refine` is the local optimiser of :mod:`registration.rigid`: at every level it moves the
MVCT level image's geometry (origin, direction) by the current ``daily → planning`` estimate, so
elastix always solves a small residual about the centre of the masked anatomy, and composes the
answer onto the estimate. A region given in the planning frame (``options.roi``,
``options.planning_region``) is intersected with the fixed-image mask *in the moved geometry*,
i.e. mapped into the MVCT by the current estimate: it follows the anatomy, not the MVCT's grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import SimpleITK as sitk

from registration.elastix_run import run_level, to_itk
from registration.errors import InputError
from registration.geometry import RigidTransformLps
from registration.probe import MiProbe
from registration.pyramid import DailyLevel, Level, mask_centroid, region_mask
from registration.result import RegistrationOptions

#: Fewer mask voxels than this inside the region of interest: the region misses the scan.
MIN_MASK_VOXELS = 20


def refine(
    planning: tuple[Any, ...],
    daily: tuple[DailyLevel, ...],
    schedule: tuple[Level, ...],
    seed: int,
    start: RigidTransformLps,
    options: RegistrationOptions,
    *,
    nmi: bool,
    done: Callable[[RigidTransformLps, int], bool] | None = None,
) -> tuple[RigidTransformLps, int]:
    """Coarse-to-fine elastix runs from ``start``; returns daily→planning and the iterations.

    ``done(estimate, k)``, asked after level ``k``, ends the refinement early when true.
    """
    estimate = start
    total_iterations = 0
    overrides: dict[str, tuple[str, ...]] | None = (
        {"Metric": ("NormalizedMutualInformation",)} if nmi else None
    )
    for k, (moving, fixed_level) in enumerate(zip(planning, daily, strict=True)):
        level = schedule[k]
        fixed = moved_geometry(fixed_level.image, estimate)
        mask = moved_geometry(fixed_level.mask, estimate)
        if has_region(options):
            mask = region_masked(mask, options)
            center = mask_centroid(mask)
        else:  # the whole mask moved, and its centroid with it
            center = estimate.apply_array(fixed_level.centroid_lps_mm[None])[0]
        if nmi:
            center = center + np.array([10.0, -10.0, 10.0])
        outcome = run_level(
            to_itk(fixed),
            moving,
            to_itk(mask, np.uint8),
            center_lps_mm=center,
            iterations=level.iterations,
            samples=level.samples,
            random_seed=seed + k,
            overrides=overrides,
        )
        estimate = estimate.then(outcome.daily_to_planning)
        total_iterations += outcome.iterations
        if done is not None and done(estimate, k):
            break
    return estimate, total_iterations


def probe_at(
    level: DailyLevel,
    planning: sitk.Image,
    estimate: RigidTransformLps,
    options: RegistrationOptions,
    seed: int,
) -> MiProbe:
    """The MI probe on the finest level, its mask limited to the region mapped by ``estimate``."""
    if not has_region(options):
        return MiProbe(level.image, level.mask, planning, seed)
    moved = region_masked(moved_geometry(level.mask, estimate), options)
    mask = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(moved))
    mask.CopyInformation(level.mask)  # the same voxels back on the MVCT's own grid
    return MiProbe(level.image, mask, planning, seed)


def has_region(options: RegistrationOptions) -> bool:
    return options.roi is not None or options.planning_region is not None


def region_masked(moved_mask: sitk.Image, options: RegistrationOptions) -> sitk.Image:
    if not has_region(options):
        return moved_mask
    keep = region_mask(moved_mask, options.roi, options.planning_region)
    if np.count_nonzero(keep) < MIN_MASK_VOXELS:
        raise InputError(
            "the region of interest holds almost no MVCT anatomy at the current estimate "
            f"({np.count_nonzero(keep)} voxels at {moved_mask.GetSpacing()[0]:.1f} mm): check that "
            "the region lies inside the scanned length"
        )
    out = sitk.GetImageFromArray(keep.astype(np.uint8))
    out.CopyInformation(moved_mask)
    return out


def moved_geometry(image: sitk.Image, transform: RigidTransformLps) -> sitk.Image:
    """The same pixels with every voxel centre moved by ``transform`` (origin and direction)."""
    out = sitk.Image(image)
    r = transform.rotation
    direction = r @ np.array(image.GetDirection()).reshape(3, 3)
    out.SetOrigin(
        tuple(float(v) for v in r @ np.array(image.GetOrigin()) + transform.translation_mm)
    )
    out.SetDirection(tuple(float(v) for v in direction.ravel()))
    return out
