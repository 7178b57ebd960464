# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""A synthetic MVCT made from a planning kVCT with a known rigid motion.

Used by the registration tests and benchmarks, the committed sample images and the QA command
``mvct-guide simulate``. Pure: no I/O; deterministic for a given ``random_seed``.

Semantics
---------
``planning_to_daily`` is ``M``, a :class:`~registration.geometry.RigidTransformLps` (LPS, mm):
**the anatomy at planning-CT point p appears at M·p in the simulated MVCT** — the same convention
as a registration result and :mod:`registration.couch`. Both images are in the same DICOM patient
frame (the room as the scanner sees it), so the daily voxel centred at ``q`` shows the planning
anatomy at ``M⁻¹·q``. ``sitk.Resample`` maps *output* points to *input* points, so the transform
given to it is exactly ``M⁻¹``.

The daily grid
--------------
* axial: identity direction; columns along +x (patient left), rows along +y, slices along +z;
* ``n × n`` pixels of ``pixel_spacing_mm``, ``n = round(fov_diameter_mm / pixel_spacing_mm)``
  (513 × 0.78 mm, or TomoTherapy's 512 × 0.78125 mm, for a 40 cm field of view), so the square
  grid covers the FOV circle whatever the size of the planning CT;
* ``round(scan_length_mm / slice_spacing_mm)`` slices of ``slice_spacing_mm``, slice thickness =
  slice spacing;
* centred on ``M·c``, with ``c`` = ``scan_center`` in the planning frame (default: the centre of
  the planning volume): the scanner scans where the anatomy is today.

Voxels whose centre lies farther than ``fov_diameter_mm / 2`` from the grid's axis hold
``padding_value_hu`` exactly, as TomoTherapy exports them. Inside the circle, places the planning
CT does not cover hold **air (-1000), not padding**: the real scanner sees air (or couch) there,
and a registration must mask the padding but may legitimately see that air.

Image formation, in this order
------------------------------
1. contrast: kV HU → MV number with :func:`harmonise_kv_to_mv`, on the planning grid (electron
   density, not HU, is what averages linearly in a partly filled voxel);
2. resampling through ``M⁻¹`` with linear interpolation at sub-slices at most
   ``slice_profile_step_mm`` apart, averaged over each slice thickness (a box slice profile);
3. in-plane Gaussian blur of SD ``blur_mm``, on top of the kVCT's own resolution;
4. cupping: ``MV + 1000`` is scaled by ``1 − (cupping_hu / 1000)·(1 − r²/R²)`` (``r`` the distance
   from the grid axis, ``R`` the FOV radius), so water reads ``cupping_hu`` lower at the centre than
   at the edge of the FOV, and air is unchanged;
5. noise: white Gaussian noise from ``numpy.random.default_rng(random_seed)``, smoothed in-plane
   with a Gaussian of SD ``noise_correlation_px`` pixels and rescaled to SD ``noise_hu``;
6. FOV mask.

Calibration: kV HU → relative electron density → MV number (approximate, not clinical)
--------------------------------------------------------------------------------------
A bilinear curve, the usual shape of a kVCT electron-density calibration::

    ρe = max(0, 1 + HU / 1000)      HU ≤ 0   (air, lung, fat, water)
    ρe = 1 + HU / 1950              HU > 0   (soft tissue, bone, contrast)
    MV number = 1000 · (ρe − 1)

At 3.5 MV attenuation is almost all Compton scattering, proportional to electron density, so an
MV number is ``1000·(ρe − 1)`` (TomoTherapy MVCT numbers are calibrated to read 0 in water).
The bone slope is an approximation: human cortical bone (ICRU 44, ρe ≈ 1.78) reads about +1500 to
+1700 HU at 120 kVp, i.e. ≈ 1/1950–1/2200 per HU; bone-equivalent phantom inserts give nearer
1/1750 *(values typical of published 120 kVp calibrations, unverified for the scanners of our
data)*. So +1000 kV HU → ρe 1.513 → MV ≈ +513; ≤ 0 HU is unchanged (clamped at -1000). Fat's
slightly higher ρe than its HU suggests (≈ 0.95 at −100 HU) is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from registration.errors import InputError
from registration.frames import FloatArray, rot_x, rot_y, rot_z
from registration.geometry import LpsPoint, RigidTransformLps

__all__ = [
    "AIR_MV",
    "BONE_HU_PER_RHO_E",
    "MvctSimulationOptions",
    "harmonise_kv_to_mv",
    "random_motion",
    "rigid_about",
    "simulate_mvct",
]

AIR_MV = -1000.0
"""MV number of air, also given to voxels inside the FOV that the planning CT does not cover."""

BONE_HU_PER_RHO_E = 1950.0
"""kV HU per unit of relative electron density above water (the bone segment of the curve)."""

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class MvctSimulationOptions:
    """How the MVCT is acquired and reconstructed; see the module docstring for each step."""

    slice_spacing_mm: float = 4.0  #: TomoTherapy fine / normal / coarse: 2, 4, 6
    pixel_spacing_mm: float = 0.78  #: 513 px over 40 cm (0.78125: 512); 1.5–2 for benchmarks
    fov_diameter_mm: float = 400.0  #: circular reconstruction field of view
    scan_length_mm: float = 120.0  #: short scans, typically 80–150 mm
    scan_center: LpsPoint | None = None  #: in the PLANNING frame; None: volume centre
    noise_hu: float = 40.0  #: SD of the added noise (MVCT: about 25–50 HU)
    blur_mm: float = 1.5  #: SD of the in-plane Gaussian blur
    cupping_hu: float = 30.0  #: water at the centre this much darker than at the FOV edge
    random_seed: int = 0
    padding_value_hu: float = -1024.0  #: outside the FOV circle, as TomoTherapy exports
    noise_correlation_px: float = 0.5  #: SD (pixels) of the in-plane smoothing of the noise
    slice_profile_step_mm: float = 2.0  #: largest z step of the sub-slices averaged per slice

    def __post_init__(self) -> None:
        positive = {
            "slice_spacing_mm": self.slice_spacing_mm,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "fov_diameter_mm": self.fov_diameter_mm,
            "scan_length_mm": self.scan_length_mm,
            "slice_profile_step_mm": self.slice_profile_step_mm,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} = {value!r} must be a positive number of millimetres")
        non_negative = {
            "noise_hu": self.noise_hu,
            "blur_mm": self.blur_mm,
            "noise_correlation_px": self.noise_correlation_px,
        }
        for name, value in non_negative.items():
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} = {value!r} must be zero or a positive number")
        if not (math.isfinite(self.cupping_hu) and abs(self.cupping_hu) < 1000):
            raise InputError(f"cupping_hu = {self.cupping_hu!r} must be between -1000 and 1000")
        if not math.isfinite(self.padding_value_hu):
            raise InputError(f"padding_value_hu = {self.padding_value_hu!r} must be finite")


def harmonise_kv_to_mv(hu: npt.ArrayLike) -> Float32Array:
    """kV CT numbers (HU) → MV numbers through relative electron density (float32, any shape).

    ``HU ≤ 0`` is kept (clamped at -1000); ``HU > 0`` is divided by 1950/1000 (see the module
    docstring for the calibration and its source).

    >>> [round(float(v), 1) for v in harmonise_kv_to_mv([-1024, -500, 0, 1000, 1950])]
    [-1000.0, -500.0, 0.0, 512.8, 1000.0]
    """
    values = np.asarray(hu, dtype=np.float32)
    # Because the bone slope is below 1, min(HU, k·HU) is k·HU above 0 and HU below: one
    # branch-free pass each, no boolean mask (about 0.1 s for 512×512×141 voxels).
    out = values * np.float32(1000.0 / BONE_HU_PER_RHO_E)
    np.minimum(out, values, out=out)
    np.maximum(out, np.float32(AIR_MV), out=out)
    return out


def rigid_about(
    center: LpsPoint, rotation: FloatArray, translation_mm: FloatArray | tuple[float, float, float]
) -> RigidTransformLps:
    """The rigid map rotating by ``rotation`` about ``center`` and moving ``center`` by
    ``translation_mm``: ``M·p = R·(p − c) + c + t``, so ``M·c = c + t``."""
    r = np.asarray(rotation, dtype=np.float64)
    c = center.as_array()
    t = np.asarray(translation_mm, dtype=np.float64)
    return RigidTransformLps.from_rotation_translation(r, c + t - r @ c)


def random_motion(
    rng: np.random.Generator, max_translation_mm: float, max_rotation_deg: float, center: LpsPoint
) -> RigidTransformLps:
    """A random rigid motion of the anatomy, ``planning_to_daily``, for known-motion tests.

    Draws, in this order, the translation of ``center`` (x, y, z; each uniform in
    ``±max_translation_mm``) and three angles (each uniform in ``±max_rotation_deg``) ``a_x, a_y,
    a_z``; the rotation is the active, right-handed ``Rz(a_z)·Ry(a_y)·Rx(a_x)`` in LPS axes (rotate
    about x first), about ``center``; see :func:`rigid_about`.
    """
    for name, value in (
        ("max_translation_mm", max_translation_mm),
        ("max_rotation_deg", max_rotation_deg),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} = {value!r} must be zero or a positive number")
    translation = rng.uniform(-max_translation_mm, max_translation_mm, size=3)
    a_x, a_y, a_z = (float(a) for a in rng.uniform(-max_rotation_deg, max_rotation_deg, size=3))
    rotation = rot_z(a_z) @ rot_y(a_y) @ rot_x(a_x)
    return rigid_about(center, rotation, translation)


@dataclass(frozen=True, slots=True)
class _Grid:
    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]

    def corners(self) -> FloatArray:
        """The 8 corner voxel centres (LPS mm), shape (8, 3)."""
        origin = np.asarray(self.origin_xyz)
        extent = (np.asarray(self.size_xyz) - 1) * np.asarray(self.spacing_xyz)
        unit = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
        return np.asarray(origin + unit * extent, dtype=np.float64)


def _daily_grid(center_mm: FloatArray, options: MvctSimulationOptions) -> tuple[_Grid, int]:
    """The output grid centred on ``center_mm`` and the fine (sub-slice) grid's ``k`` per slice."""
    n_xy = max(1, round(options.fov_diameter_mm / options.pixel_spacing_mm))
    n_z = max(1, round(options.scan_length_mm / options.slice_spacing_mm))
    spacing = (options.pixel_spacing_mm, options.pixel_spacing_mm, options.slice_spacing_mm)
    size = (n_xy, n_xy, n_z)
    origin = center_mm - (np.asarray(size) - 1) / 2.0 * np.asarray(spacing)
    grid = _Grid(size, spacing, (float(origin[0]), float(origin[1]), float(origin[2])))
    per_slice = max(1, math.ceil(options.slice_spacing_mm / options.slice_profile_step_mm - 1e-9))
    return grid, per_slice


def _fine_grid(grid: _Grid, per_slice: int) -> _Grid:
    """Sub-slices at the centres of ``per_slice`` equal parts of each slice thickness."""
    dz = grid.spacing_xyz[2] / per_slice
    z0 = grid.origin_xyz[2] - grid.spacing_xyz[2] / 2.0 + dz / 2.0
    return _Grid(
        (grid.size_xyz[0], grid.size_xyz[1], grid.size_xyz[2] * per_slice),
        (grid.spacing_xyz[0], grid.spacing_xyz[1], dz),
        (grid.origin_xyz[0], grid.origin_xyz[1], z0),
    )


def _harmonised_crop(
    planning: sitk.Image, daily_to_planning: RigidTransformLps, fine: _Grid
) -> sitk.Image:
    """The part of the planning CT the fine grid samples (plus a voxel), as MV numbers."""
    points = daily_to_planning.apply_array(fine.corners())
    index = np.array(
        [planning.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in points]
    )
    size = np.asarray(planning.GetSize())
    lo = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, size)
    hi = np.clip(np.ceil(index.max(axis=0)).astype(int) + 2, 0, size)
    if np.any(hi <= lo):
        raise InputError(
            "the simulated scan does not overlap the planning CT; choose a scan_center inside "
            "the planning CT (LPS mm) or a smaller motion"
        )
    crop = planning[int(lo[0]) : int(hi[0]), int(lo[1]) : int(hi[1]), int(lo[2]) : int(hi[2])]
    harmonised = sitk.GetImageFromArray(harmonise_kv_to_mv(sitk.GetArrayViewFromImage(crop)))
    harmonised.CopyInformation(crop)
    return harmonised


def _resample(
    moving: sitk.Image, daily_to_planning: RigidTransformLps, fine: _Grid
) -> Float32Array:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in daily_to_planning.rotation.ravel()))
    transform.SetTranslation(tuple(float(v) for v in daily_to_planning.translation_mm))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(fine.size_xyz)
    resampler.SetOutputSpacing(fine.spacing_xyz)
    resampler.SetOutputOrigin(fine.origin_xyz)
    resampler.SetOutputDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    resampler.SetTransform(transform)  # maps output (daily) points to input (planning) points
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(AIR_MV)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampler.Execute(moving))  # (z, y, x)


def _correlated_noise(
    shape: tuple[int, ...], options: MvctSimulationOptions, rng: np.random.Generator
) -> Float32Array:
    """Gaussian noise of SD ``noise_hu``, smoothed in-plane by ``noise_correlation_px``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma_px = options.noise_correlation_px
    if sigma_px > 0:
        noise = ndimage.gaussian_filter(noise, (0.0, sigma_px, sigma_px), mode="reflect")
        # The SD of white noise smoothed by a separable kernel w⊗w is Σw², computed exactly.
        impulse = np.zeros(2 * math.ceil(4 * sigma_px) + 1)
        impulse[impulse.size // 2] = 1.0
        weights = ndimage.gaussian_filter1d(impulse, sigma_px, mode="constant")
        noise *= np.float32(1.0 / float(np.sum(weights**2)))
    noise *= np.float32(options.noise_hu)
    return noise


def simulate_mvct(
    planning: sitk.Image,
    planning_to_daily: RigidTransformLps,
    options: MvctSimulationOptions = MvctSimulationOptions(),  # frozen, so a shared default is safe
) -> sitk.Image:
    """An MVCT-like float32 image (MV numbers) of ``planning`` moved by ``planning_to_daily``.

    ``planning`` is a 3-D scalar image in kV HU, any direction, LPS mm. The anatomy at planning
    point ``p`` appears at ``planning_to_daily·p`` in the result; the grid, contrast, blur,
    cupping, noise and FOV padding are described in the module docstring. Raises
    :class:`~registration.errors.InputError` when the planning image is not a 3-D scalar image or
    the scan does not overlap it.
    """
    if planning.GetDimension() != 3 or planning.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"the planning CT must be a 3-D scalar image, got {planning.GetDimension()}-D with "
            f"{planning.GetNumberOfComponentsPerPixel()} components per voxel"
        )
    if options.scan_center is None:
        middle = [(n - 1) / 2.0 for n in planning.GetSize()]
        scan_center = LpsPoint.from_array(planning.TransformContinuousIndexToPhysicalPoint(middle))
    else:
        scan_center = options.scan_center
    daily_center = planning_to_daily.apply(scan_center).as_array()
    grid, per_slice = _daily_grid(daily_center, options)
    fine = _fine_grid(grid, per_slice)
    daily_to_planning = planning_to_daily.inverse()

    moving = _harmonised_crop(planning, daily_to_planning, fine)
    samples = _resample(moving, daily_to_planning, fine)
    n_x, n_y, n_z = grid.size_xyz
    image = samples.reshape(n_z, per_slice, n_y, n_x).mean(axis=1, dtype=np.float32)

    blur_px = options.blur_mm / options.pixel_spacing_mm
    if blur_px > 0:
        image = ndimage.gaussian_filter(image, (0.0, blur_px, blur_px), mode="nearest")

    offsets_x = (np.arange(n_x) - (n_x - 1) / 2.0) * options.pixel_spacing_mm
    offsets_y = (np.arange(n_y) - (n_y - 1) / 2.0) * options.pixel_spacing_mm
    radius_sq = (offsets_x[np.newaxis, :] ** 2 + offsets_y[:, np.newaxis] ** 2).astype(np.float32)
    fov_radius_sq = np.float32((options.fov_diameter_mm / 2.0) ** 2)
    if options.cupping_hu != 0:
        fraction = np.float32(options.cupping_hu / 1000.0)
        scale = 1.0 - fraction * np.maximum(1.0 - radius_sq / fov_radius_sq, 0.0)
        image += np.float32(-AIR_MV)
        image *= scale.astype(np.float32)
        image += np.float32(AIR_MV)
    if options.noise_hu > 0:
        rng = np.random.default_rng(options.random_seed)
        image += _correlated_noise(image.shape, options, rng)
    image[:, radius_sq > fov_radius_sq] = np.float32(options.padding_value_hu)

    result = sitk.GetImageFromArray(image.astype(np.float32, copy=False))
    result.SetSpacing(grid.spacing_xyz)
    result.SetOrigin(grid.origin_xyz)
    result.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return result
