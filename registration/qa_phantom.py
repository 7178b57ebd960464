# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""The daily-QA phantom: its reference kV CT, its layout, and what an MVCT of it shows.

The phantom (:func:`qa_phantom_ct`) is a water cylinder (0 HU) of ``radius_mm`` 100 and length
110 mm, axis along LPS z through the origin, with four rod inserts of radius 10 mm and length
30 mm, 60 mm off-axis at 0°, 90°, 180° and 270° (angle from +x towards +y), each at its own z.
A 120 mm scan centred on it sees both flat ends: the ends and the staggered rods fix the position
along the axis. Scan it with **fine pitch (2 mm slices)**: through the real registration the
longitudinal error was ≤ 0.04 mm at 2 mm slices but reached 0.46 mm at 4 mm and 0.95 mm at 6 mm
(``bench/bench_qa.py``; with rods alone and no ends in the scan, 0.85 mm at 4 mm). Rotation
about the axis (roll, for a phantom lying along the couch) is fixed only by the four 10 mm rods:
a 1° roll offset was recovered with up to 0.46° error, so keep the angular tolerance at 1°:

=========  ========  ==========  ===================================================
insert     kV HU     MV number   (MV = :func:`~registration.simulate.harmonise_kv_to_mv`)
=========  ========  ==========  ===================================================
lung       −700      −700        lung-equivalent (LN-300-like)
bone       +1000     +513        bone-equivalent; dim on MVCT (electron density)
adipose    −100      −100
air        −1000     −1000       an empty hole
=========  ========  ==========  ===================================================

Uniform regions: the centre disc (radius 20 mm) and four peripheral discs (radius 8 mm, 80 mm
off-axis at 45°, 135°, 225°, 315°), measured on the slices ``|z| ≤ 35 mm`` (between the ends).

Figures (:func:`measure_phantom_image`, all in the MVCT's numbers): ``noise_hu`` = SD in the
centre disc; ``uniformity_hu`` = the largest |peripheral mean − centre mean| (the usual CT
definition, e.g. IAEA Human Health Series 19); each insert's mean in a disc of 0.6 × its radius,
on slices at least one slice thickness from the rod's ends. ROIs are placed in the phantom frame
and carried into the MVCT by ``planning_to_daily`` (the registration found, or the known set-up);
values are read at the nearest MVCT voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from registration.errors import InputError
from registration.frames import FloatArray
from registration.geometry import RigidTransformLps
from registration.simulate import harmonise_kv_to_mv
from registration.simulate_anatomy import coordinate_mm

__all__ = [
    "PHANTOM",
    "QaImageFigures",
    "QaInsert",
    "QaPhantomLayout",
    "measure_phantom_image",
    "qa_phantom_ct",
]


@dataclass(frozen=True, slots=True)
class QaInsert:
    """A rod insert: centre (x, y) in the phantom frame, z range, radius and kV CT number."""

    name: str
    x_mm: float
    y_mm: float
    z_from_mm: float
    z_to_mm: float
    radius_mm: float
    kv_hu: float

    @property
    def mv_number(self) -> float:
        """The nominal MVCT number (electron-density calibration of registration.simulate)."""
        return float(harmonise_kv_to_mv([self.kv_hu])[0])


@dataclass(frozen=True, slots=True)
class QaPhantomLayout:
    """Geometry of the phantom in its own frame (LPS mm of its reference CT)."""

    radius_mm: float
    length_mm: float
    inserts: tuple[QaInsert, ...]
    centre_roi_radius_mm: float = 20.0
    peripheral_roi_offset_mm: float = 80.0
    peripheral_roi_radius_mm: float = 8.0
    uniform_z_mm: float = 35.0  #: uniform ROIs on slices with |z| ≤ this


def _rod(name: str, angle_deg: float, z_mm: float, kv_hu: float) -> QaInsert:
    a = math.radians(angle_deg)
    x, y = 60.0 * math.cos(a), 60.0 * math.sin(a)
    return QaInsert(name, round(x, 6), round(y, 6), z_mm - 15.0, z_mm + 15.0, 10.0, kv_hu)


PHANTOM = QaPhantomLayout(
    radius_mm=100.0,
    length_mm=110.0,
    inserts=(
        _rod("lung", 0.0, -30.0, -700.0),
        _rod("bone", 90.0, -10.0, 1000.0),
        _rod("adipose", 180.0, 10.0, -100.0),
        _rod("air", 270.0, 30.0, -1000.0),
    ),
)


@dataclass(frozen=True, slots=True)
class QaImageFigures:
    """What an MVCT of the phantom shows: noise, uniformity and each insert's mean number."""

    noise_hu: float
    uniformity_hu: float
    inserts: tuple[tuple[str, float], ...]  #: (name, mean MV number)

    def insert(self, name: str) -> float:
        for insert_name, value in self.inserts:
            if insert_name == name:
                return value
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "noise_hu": round(self.noise_hu, 2),
            "uniformity_hu": round(self.uniformity_hu, 2),
            "inserts": {name: round(value, 2) for name, value in self.inserts},
        }


def qa_phantom_ct(
    layout: QaPhantomLayout = PHANTOM,
    pixel_mm: float = 1.0,
    slice_mm: float = 2.0,
    margin_mm: float = 20.0,
) -> sitk.Image:
    """The phantom's reference kV CT (HU, float32, identity direction, centred on the origin).

    Air around the cylinder; edges are partial-volume weighted (sub-voxel anti-aliasing) so that
    registration to it is not biased by a staircase.
    """
    half_xy = layout.radius_mm + margin_mm
    half_z = layout.length_mm / 2 + margin_mm
    n_xy = 2 * math.ceil(half_xy / pixel_mm) + 1
    n_z = 2 * math.ceil(half_z / slice_mm) + 1
    image = sitk.Image([n_xy, n_xy, n_z], sitk.sitkFloat32)
    image.SetSpacing((pixel_mm, pixel_mm, slice_mm))
    image.SetOrigin(
        (-(n_xy - 1) / 2 * pixel_mm, -(n_xy - 1) / 2 * pixel_mm, -(n_z - 1) / 2 * slice_mm)
    )
    shape = image.GetSize()[::-1]
    x, y, z = (np.broadcast_to(coordinate_mm(image, a), shape).astype(np.float64) for a in range(3))

    def soft(distance_inside_mm: npt.NDArray[np.float64], width_mm: float) -> FloatArray:
        """Partial-volume weight of a boundary at distance ``distance_inside_mm`` (inside > 0)."""
        weight: FloatArray = np.clip(0.5 + distance_inside_mm / width_mm, 0.0, 1.0)
        return weight

    r = np.sqrt(x**2 + y**2)
    cylinder = soft(layout.radius_mm - r, pixel_mm) * soft(
        layout.length_mm / 2 - np.abs(z), slice_mm
    )
    values = -1000.0 + 1000.0 * cylinder  # water in air
    for insert in layout.inserts:
        ri = np.sqrt((x - insert.x_mm) ** 2 + (y - insert.y_mm) ** 2)
        mid = (insert.z_from_mm + insert.z_to_mm) / 2
        half = (insert.z_to_mm - insert.z_from_mm) / 2
        w = soft(insert.radius_mm - ri, pixel_mm) * soft(half - np.abs(z - mid), slice_mm)
        values = (1 - w) * values + w * np.float32(insert.kv_hu)
    result = sitk.GetImageFromArray(values.astype(np.float32))
    result.CopyInformation(image)
    return result


def measure_phantom_image(
    daily_mv: sitk.Image,
    planning_to_daily: RigidTransformLps,
    layout: QaPhantomLayout = PHANTOM,
) -> QaImageFigures:
    """Noise, uniformity and insert numbers of an MVCT of the phantom (module docstring)."""
    slice_mm = daily_mv.GetSpacing()[2]
    uniform_z = np.arange(-layout.uniform_z_mm, layout.uniform_z_mm + 1e-6, slice_mm)
    centre = _values(daily_mv, planning_to_daily, 0.0, 0.0, layout.centre_roi_radius_mm, uniform_z)
    peripheral_means: list[float] = []
    for angle_deg in (45.0, 135.0, 225.0, 315.0):
        a = math.radians(angle_deg)
        d = layout.peripheral_roi_offset_mm
        v = _values(
            daily_mv,
            planning_to_daily,
            d * math.cos(a),
            d * math.sin(a),
            layout.peripheral_roi_radius_mm,
            uniform_z,
        )
        peripheral_means.append(float(v.mean()))
    centre_mean = float(centre.mean())
    inserts: list[tuple[str, float]] = []
    for insert in layout.inserts:
        zs = np.arange(insert.z_from_mm + slice_mm, insert.z_to_mm - slice_mm + 1e-6, slice_mm / 2)
        if zs.size == 0:
            zs = np.array([(insert.z_from_mm + insert.z_to_mm) / 2])
        v = _values(
            daily_mv, planning_to_daily, insert.x_mm, insert.y_mm, 0.6 * insert.radius_mm, zs
        )
        inserts.append((insert.name, float(v.mean())))
    return QaImageFigures(
        noise_hu=float(centre.std(ddof=1)),
        uniformity_hu=max(abs(m - centre_mean) for m in peripheral_means),
        inserts=tuple(inserts),
    )


def _values(
    daily: sitk.Image,
    planning_to_daily: RigidTransformLps,
    x_mm: float,
    y_mm: float,
    radius_mm: float,
    z_mm: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """MVCT values at the distinct voxels nearest to a disc's points (phantom frame), per z."""
    step = min(daily.GetSpacing()[:2]) / 2
    g = np.arange(-radius_mm, radius_mm + 1e-9, step)
    gx, gy = np.meshgrid(g, g)
    disc = (gx**2 + gy**2) <= radius_mm**2
    points = np.stack(
        [
            np.repeat(gx[disc][None] + x_mm, z_mm.size, axis=0).ravel(),
            np.repeat(gy[disc][None] + y_mm, z_mm.size, axis=0).ravel(),
            np.repeat(z_mm[:, None], int(disc.sum()), axis=1).ravel(),
        ],
        axis=1,
    )
    moved = planning_to_daily.apply_array(points)
    d = np.array(daily.GetDirection()).reshape(3, 3)
    index = np.rint(((moved - np.array(daily.GetOrigin())) @ d) / np.array(daily.GetSpacing()))
    index = np.unique(index.astype(np.int64), axis=0)
    size = np.array(daily.GetSize())
    inside = np.all((index >= 0) & (index < size), axis=1)
    if not inside.all():
        raise InputError(
            f"a QA region at ({x_mm:.0f}, {y_mm:.0f}) mm of the phantom lies outside the MVCT: "
            "scan the whole phantom centre ±60 mm"
        )
    array = sitk.GetArrayViewFromImage(daily)
    values: npt.NDArray[np.float32] = array[index[:, 2], index[:, 1], index[:, 0]].astype(
        np.float32
    )
    return values
