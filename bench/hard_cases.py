"""Hard cases for the registration benchmark: images that mislead a rigid MI match.

Each builder returns planning and daily volumes plus the true motion; the benchmark then asks
whether the result is right (max TRE ≤ 1 mm over a 50 mm sphere) and whether it was trusted.
Kinds (``KINDS``): a periodic anatomy in a short scan (every period alike: one-vertebra slips
cannot be told apart, so the answer must not be trusted), a truncated MVCT field of view, a body
much larger than the planning CT's field of view, low overlap (scan half beyond the planning
CT's end), 80 HU noise, 2 mm and 6 mm slices, a foreign couch in the MVCT, metal rods with
streaks in the planning CT, and a set-up error beyond the capture range.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from registration.geometry import LpsPoint, RigidTransformLps
from registration.simulate import MvctSimulationOptions, random_motion, simulate_mvct
from registration.volume import CtVolume

KINDS = (
    "periodic-slip",
    "truncated-fov",
    "body-beyond-planning-fov",
    "low-overlap",
    "noise-80hu",
    "slices-2mm",
    "slices-6mm",
    "couch-in-mvct",
    "metal-in-planning",
    "beyond-capture",
)
#: Kinds whose correct answer is knowable and should be trusted (the 5 % target applies).
ORDINARY = (
    "truncated-fov",
    "noise-80hu",
    "slices-2mm",
    "slices-6mm",
    "couch-in-mvct",
    "metal-in-planning",
    "body-beyond-planning-fov",
)


@dataclasses.dataclass
class HardCase:
    kind: str
    planning: CtVolume
    daily: CtVolume
    truth: RigidTransformLps
    isocenter: LpsPoint


def _image_like(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(like)
    return out


def periodic(planning: CtVolume, iso: LpsPoint, period_mm: float = 28.0) -> CtVolume:
    image = planning.image
    k = image.TransformPhysicalPointToIndex(iso.as_array().tolist())[2]
    n = max(2, round(period_mm / image.GetSpacing()[2]))
    arr = sitk.GetArrayFromImage(image)
    slab = arr[max(0, k - n // 2) : max(0, k - n // 2) + n]
    out = sitk.GetImageFromArray(np.concatenate([slab] * 10, axis=0))
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(image.GetDirection())
    out.SetOrigin(image.GetOrigin())
    return CtVolume(out, planning.patient_position)


def lateral_crop(planning: CtVolume, width_mm: float) -> CtVolume:
    image = planning.image
    nx = image.GetSize()[0]
    keep = min(nx, round(width_mm / image.GetSpacing()[0]))
    lo = (nx - keep) // 2
    return CtVolume(image[lo : lo + keep, :, :], planning.patient_position)


def with_couch(daily: CtVolume) -> CtVolume:
    """A 15 mm plate of MV number +100 below the body, across the reconstruction circle."""
    arr = sitk.GetArrayFromImage(daily.image)
    pad = arr[0, 0, 0]
    body_rows = np.nonzero((arr > -500).any(axis=(0, 2)))[0]
    dy = daily.image.GetSpacing()[1]
    top = int(body_rows.max()) + max(1, round(5 / dy))
    rows = slice(top, min(arr.shape[1], top + max(1, round(15 / dy))))
    plate = arr[:, rows, :]
    plate[plate != pad] = 100.0
    return CtVolume(_image_like(arr, daily.image), daily.patient_position)


def with_metal(planning: CtVolume, iso: LpsPoint) -> CtVolume:
    """Two 3 mm steel-like rods (3000 HU) 30 mm from the isocentre with ±400 HU streaks."""
    image = planning.image
    arr = sitk.GetArrayFromImage(image)
    s = image.GetSpacing()
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in arr.shape), indexing="ij")
    ci = np.array(image.TransformPhysicalPointToContinuousIndex(iso.as_array().tolist()))
    for dx_mm in (-30.0, 30.0):
        cx = ci[0] + dx_mm / s[0]
        r2 = ((xx - cx) * s[0]) ** 2 + ((yy - ci[1]) * s[1]) ** 2
        near = np.abs((zz - ci[2]) * s[2]) < 20
        arr[near & (r2 < 9)] = 3000.0
        angle = np.arctan2((yy - ci[1]) * s[1], (xx - cx) * s[0])
        streak = near & (r2 >= 9) & (r2 < 80**2)
        arr[streak] += (400.0 * np.cos(8 * angle) * np.exp(-np.sqrt(r2) / 40.0))[streak]
    return CtVolume(_image_like(arr, image), planning.patient_position)


def build(kind: str, planning: CtVolume, iso: LpsPoint, rng: np.random.Generator) -> HardCase:
    """One case of ``kind`` on ``planning`` around ``iso`` (motions ±15 mm, ±3° unless said)."""
    motion = random_motion(rng, 15.0, 3.0, iso)
    patient = planning  # what the MVCT sees; the planning CT may differ from it (metal, FOV)
    sim = MvctSimulationOptions(
        pixel_spacing_mm=1.5,
        scan_center=iso,
        scan_length_mm=100.0,
        noise_hu=40.0,
        random_seed=int(rng.integers(1 << 30)),
    )
    if kind == "periodic-slip":
        planning = patient = periodic(planning, iso)
        sim = dataclasses.replace(sim, scan_length_mm=60.0)
        motion = random_motion(rng, 5.0, 2.0, iso)
    elif kind == "truncated-fov":
        sim = dataclasses.replace(sim, fov_diameter_mm=260.0)
    elif kind == "body-beyond-planning-fov":
        planning = lateral_crop(planning, 280.0)
    elif kind == "low-overlap":
        size = planning.image.GetSize()
        end = planning.image.TransformContinuousIndexToPhysicalPoint(
            [(size[0] - 1) / 2, (size[1] - 1) / 2, size[2] - 1.0]
        )
        top = LpsPoint(iso.x_mm, iso.y_mm, end[2] - 25.0)  # 35 of 120 mm beyond the end
        sim = dataclasses.replace(sim, scan_center=top, scan_length_mm=120.0)
        iso = LpsPoint(iso.x_mm, iso.y_mm, end[2] - 40.0)
        motion = random_motion(rng, 10.0, 2.0, iso)
    elif kind == "noise-80hu":
        sim = dataclasses.replace(sim, noise_hu=80.0)
    elif kind == "slices-2mm":
        sim = dataclasses.replace(sim, slice_spacing_mm=2.0)
    elif kind == "slices-6mm":
        sim = dataclasses.replace(sim, slice_spacing_mm=6.0)
    elif kind == "metal-in-planning":
        planning = with_metal(planning, iso)
    elif kind == "beyond-capture":
        d = rng.choice([-1.0, 1.0], size=3) * np.array([70.0, 10.0, 10.0])
        motion = RigidTransformLps.from_rotation_translation(np.eye(3), d).then(motion)
    elif kind != "couch-in-mvct":
        raise ValueError(f"unknown hard-case kind {kind!r}; choose one of {', '.join(KINDS)}")
    # the source images are simulated from the unmodified anatomy where the kind concerns only
    # the planning side (metal, a cropped field of view): the MVCT sees the real patient
    daily = CtVolume(simulate_mvct(patient.image, motion, sim), planning.patient_position)
    if kind == "couch-in-mvct":
        daily = with_couch(daily)
    return HardCase(kind, planning, daily, motion, iso)
