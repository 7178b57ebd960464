"""Global initialisation: an exhaustive rotation × translation search on the coarsest level.

The local optimiser (elastix, :mod:`registration.rigid`) only finds the nearest optimum; this
module finds where to start it. For each rotation sample (every combination of
:data:`ROTATION_SAMPLES_DEG` about the LPS x, y and z axes, ``R = Rz·Ry·Rx``, active, about the
centre ``c`` of the MVCT's masked anatomy) the MVCT level image and its mask are resampled onto
the planning level's grid by the candidate ``x → R·(x − c) + c``, and the masked normalised
cross-correlation (Padfield 2012, "Masked object registration in the Fourier domain") against
the planning CT is computed for every whole-voxel translation within ±:data:`SEARCH_RANGE_MM`
along each planning axis at once, with FFTs. The planning CT is first mapped kV → MV through the
electron-density curve of :func:`registration.simulate.harmonise_kv_to_mv`, so that a linear
similarity suits the two contrasts at this coarse scale (body outline, lungs, bone).

Each rotation contributes its best few local maxima (sub-voxel by a parabola through the peak
and its neighbours); the answer is every candidate, best first. Candidates are ``daily →
planning`` rigid transforms, the direction :mod:`registration.rigid` solves in. A candidate whose
translation lies on the edge of the searched range is flagged: the true optimum may lie beyond.

With rotation samples at 0 and ±7° and translations every 10 mm, any set-up error within ±40 mm
and ±10° about each axis lies within 3.5° and 5 mm of a sample, inside the local optimiser's
capture range (±25 mm, ±5°).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import fft, ndimage

from registration.frames import FloatArray, rot_x, rot_y, rot_z
from registration.geometry import RigidTransformLps
from registration.pyramid import DailyLevel
from registration.simulate import harmonise_kv_to_mv

SEARCH_RANGE_MM = 60.0
ROTATION_SAMPLES_DEG = (-7.0, 0.0, 7.0)
#: Translations whose overlap with the planning CT is below this share of the MVCT mask are not
#: candidates (a small overlap gives a noisy, meaninglessly high correlation).
MIN_OVERLAP_FRACTION = 0.6
PEAKS_PER_ROTATION = 3
#: Subtracted from both images (NCC ignores it) so float32 sums of squares stay well-conditioned.
_OFFSET = np.float32(-400.0)

Float64Array = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One starting point found by the search: ``daily → planning`` and its similarity."""

    daily_to_planning: RigidTransformLps
    ncc: float  #: masked normalised cross-correlation, −1 … 1, higher is better
    at_search_edge: bool  #: the translation lies on the border of the searched range


@dataclass(frozen=True)
class SearchPlanning:
    """The planning side of the search, prepared once per course."""

    grid: sitk.Image  #: the planning level, for its geometry
    values: Float32Array  #: (z, y, x) planning values mapped kV → MV


def prepare_search(planning_level: sitk.Image) -> SearchPlanning:
    """Map the coarsest planning level to MV numbers (once per course)."""
    arr = sitk.GetArrayFromImage(planning_level)
    return SearchPlanning(planning_level, harmonise_kv_to_mv(arr) - _OFFSET)


def search(
    planning: SearchPlanning, daily: DailyLevel, center_lps_mm: FloatArray
) -> tuple[Candidate, ...]:
    """Every candidate start, best (highest correlation) first; see the module docstring."""
    grid = planning.grid
    spacing = np.array(grid.GetSpacing())
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    origin = np.array(grid.GetOrigin())
    reach = np.ceil(SEARCH_RANGE_MM / spacing).astype(int)  # shift range per axis, voxels (x,y,z)
    starts = []
    for ax, ay, az in itertools.product(ROTATION_SAMPLES_DEG, repeat=3):
        rotation = rot_z(az) @ rot_y(ay) @ rot_x(ax)
        starts.append(
            RigidTransformLps.from_rotation_translation(
                rotation, center_lps_mm - rotation @ center_lps_mm
            )
        )
    # one sub-grid of the planning grid holding the moved MVCT anatomy for every rotation, so
    # the planning side's spectra are computed once
    corners = _corner_points(daily.mask)
    moved = np.concatenate([s.apply_array(corners) for s in starts])
    idx = ((moved - origin) @ direction) / spacing
    lo = np.floor(idx.min(axis=0)).astype(int)
    size = np.ceil(idx.max(axis=0)).astype(int) - lo + 1
    sub = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    sub.SetSpacing(grid.GetSpacing())
    sub.SetDirection(grid.GetDirection())
    sub.SetOrigin(tuple(float(v) for v in origin + direction @ (lo * spacing)))
    # planning crop covering every shift: index [lo − reach, hi + reach], zero outside the CT
    g, n = _crop(planning.values, lo - reach, size + 2 * reach)
    correlator = _Correlator(g, n, reach)
    found: list[Candidate] = []
    for start in starts:
        ncc = correlator.ncc(*_resampled(daily, sub, start))
        for zyx, value, edge in _peaks(ncc, reach):
            shift_vox = zyx[::-1] - reach  # x, y, z
            t = direction @ (shift_vox * spacing)
            pose = start.then(RigidTransformLps.from_rotation_translation(np.eye(3), t))
            found.append(Candidate(pose, value, edge))
    found.sort(key=lambda c: -c.ncc)
    return tuple(found)


def _resampled(
    daily: DailyLevel, sub: sitk.Image, start: RigidTransformLps
) -> tuple[Float32Array, Float32Array]:
    """The MVCT values (times its mask) and mask on ``sub``, moved by ``start``."""
    to_daily = sitk.AffineTransform(3)
    inverse = start.inverse()
    to_daily.SetMatrix([float(v) for v in inverse.rotation.ravel()])
    to_daily.SetTranslation([float(v) for v in inverse.translation_mm])
    f_img = _resampler(sub, to_daily, sitk.sitkLinear, -1000.0).Execute(daily.image)
    m_img = _resampler(sub, to_daily, sitk.sitkNearestNeighbor, 0.0).Execute(daily.mask)
    m = sitk.GetArrayFromImage(m_img).astype(np.float32)
    f = (sitk.GetArrayFromImage(f_img) - _OFFSET) * m
    return f, m


def _resampler(
    grid: sitk.Image, transform: sitk.Transform, interpolator: int, outside: float
) -> sitk.ResampleImageFilter:
    """A one-thread resampler onto ``grid``: these images are small (tens of thousands of
    voxels), and on a busy machine handing them to a thread pool costs more than the work."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid)
    resampler.SetTransform(transform)
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(outside)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetNumberOfThreads(1)
    return resampler


class _Correlator:
    """Masked NCC of a moving MVCT block against a fixed planning crop, for every shift."""

    def __init__(self, g: Float32Array, n: Float32Array, reach: npt.NDArray[np.int_]) -> None:
        self.shape = [fft.next_fast_len(s, real=True) for s in g.shape]
        self.out = tuple(slice(0, 2 * r + 1) for r in reach[::-1])
        self.gn, self.gg, self.gg2 = (self._spectrum(a) for a in (n, g * n, g * g * n))

    def _spectrum(self, a: Float32Array) -> npt.NDArray[np.complex64]:
        result: npt.NDArray[np.complex64] = fft.rfftn(a, self.shape)
        return result

    def _corr(self, fa: npt.NDArray[np.complex64], fb: npt.NDArray[np.complex64]) -> Float64Array:
        """Cross-correlation at the searched shifts only: the inverse transform is pruned axis
        by axis (z, then y, then the real x axis), keeping only the rows the shifts need."""
        spectrum = np.conj(fa) * fb
        nz, ny, nx = (s.stop for s in self.out)
        spectrum = fft.ifft(spectrum, self.shape[0], axis=0)[:nz]
        spectrum = fft.ifft(spectrum, self.shape[1], axis=1)[:, :ny]
        full = fft.irfft(spectrum, self.shape[2], axis=2)[:, :, :nx]
        return np.asarray(full, dtype=np.float64)

    def ncc(self, f: Float32Array, m: Float32Array) -> Float64Array:
        count = float(m.sum())
        if count < 10:
            return np.full(tuple(s.stop for s in self.out), -1.0)
        fm, ff, ff2 = (self._spectrum(a) for a in (m, f, f * f))
        overlap = self._corr(fm, self.gn)
        sum_f, sum_f2 = self._corr(ff, self.gn), self._corr(ff2, self.gn)
        sum_g, sum_g2 = self._corr(fm, self.gg), self._corr(fm, self.gg2)
        sum_fg = self._corr(ff, self.gg)
        valid = overlap >= MIN_OVERLAP_FRACTION * count
        safe = np.maximum(overlap, 1.0)
        var_f = np.maximum(sum_f2 - sum_f**2 / safe, 1e-6 * safe)
        var_g = np.maximum(sum_g2 - sum_g**2 / safe, 1e-6 * safe)
        ncc: Float64Array = np.where(
            valid, (sum_fg - sum_f * sum_g / safe) / np.sqrt(var_f * var_g), -1.0
        )
        return ncc


def _peaks(
    ncc: Float64Array, reach: npt.NDArray[np.int_]
) -> list[tuple[Float64Array, float, bool]]:
    """The best local maxima: (sub-voxel z, y, x shift index, value, on the range's edge)."""
    peaks = (ncc == ndimage.maximum_filter(ncc, size=3, mode="constant", cval=-1.0)) & (ncc > -1)
    order = np.argsort(ncc[peaks])[::-1][:PEAKS_PER_ROTATION]
    out = []
    for zyx in np.argwhere(peaks)[order]:
        edge = bool(np.any(np.abs(zyx[::-1] - reach) >= reach))
        sub_voxel = zyx.astype(np.float64) + _parabola_offsets(ncc, zyx)
        out.append((sub_voxel, float(ncc[tuple(zyx)]), edge))
    return out


def _parabola_offsets(ncc: Float64Array, zyx: npt.NDArray[np.intp]) -> Float64Array:
    """Sub-voxel offset of a peak along each axis (a parabola through three samples)."""
    offsets = np.zeros(3)
    for axis in range(3):
        if zyx[axis] == 0 or zyx[axis] == ncc.shape[axis] - 1:
            continue
        before, after = zyx.copy(), zyx.copy()
        before[axis] -= 1
        after[axis] += 1
        a, b, c = ncc[tuple(before)], ncc[tuple(zyx)], ncc[tuple(after)]
        denom = a - 2 * b + c
        if denom < 0:
            offsets[axis] = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return offsets


def _crop(
    values: Float32Array, lo_xyz: npt.NDArray[np.int_], size_xyz: npt.NDArray[np.int_]
) -> tuple[Float32Array, Float32Array]:
    """``values[lo : lo + size]`` (x, y, z order given) zero-padded outside, and its mask."""
    lo = lo_xyz[::-1]
    size = size_xyz[::-1]
    out = np.zeros(tuple(int(s) for s in size), dtype=np.float32)
    mask = np.zeros_like(out)
    src = tuple(
        slice(max(0, int(a)), min(int(n), int(a + s)))
        for a, s, n in zip(lo, size, values.shape, strict=True)
    )
    dst = tuple(slice(sl.start - int(a), sl.stop - int(a)) for sl, a in zip(src, lo, strict=True))
    if all(sl.stop > sl.start for sl in src):
        out[dst] = values[src]
        mask[dst] = 1.0
    return out, mask


def _corner_points(mask: sitk.Image) -> FloatArray:
    """The 8 corners (LPS mm) of the bounding box of the mask's voxels (whole image if empty)."""
    sel = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if sel.size == 0:
        lo, hi = np.zeros(3, dtype=int), np.array(mask.GetSize()) - 1
    else:
        lo, hi = sel.min(axis=0)[::-1], sel.max(axis=0)[::-1]
    pts = [
        mask.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
        for i in (lo[0], hi[0])
        for j in (lo[1], hi[1])
        for k in (lo[2], hi[2])
    ]
    return np.array(pts, dtype=np.float64)
