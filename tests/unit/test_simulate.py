"""Tests of registration.simulate: known motions, grid, contrast, noise, FOV, determinism.

Sign convention under test: the anatomy at planning point p appears at M·p in the simulated MVCT,
M = planning_to_daily. Small synthetic phantoms (64×64×40 voxels of 2 mm, centred on the LPS
origin) keep the unit tests fast; one test uses the real thorax CT in ../shared/data.
"""

from __future__ import annotations

import doctest
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.transform import Rotation

from registration import simulate
from registration.errors import InputError
from registration.frames import rot_x, rot_y, rot_z
from registration.geometry import LpsPoint, RigidTransformLps
from registration.simulate import (
    MvctSimulationOptions,
    harmonise_kv_to_mv,
    random_motion,
    rigid_about,
    simulate_mvct,
)

THORAX = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "thorax_4dct_phase00_dicom"
)

#: Noise-free, cupping-free, small field: for geometry tests.
EXACT = MvctSimulationOptions(
    slice_spacing_mm=2.0,
    pixel_spacing_mm=1.0,
    fov_diameter_mm=160.0,
    scan_length_mm=60.0,
    noise_hu=0.0,
    cupping_hu=0.0,
    blur_mm=1.5,
)


def phantom(
    hu: float = 0.0,
    size: tuple[int, int, int] = (64, 64, 40),
    spacing_mm: float = 2.0,
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> sitk.Image:
    """A uniform box of ``hu`` centred on the LPS origin, with any direction."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image += hu
    image.SetSpacing([spacing_mm] * 3)
    image.SetDirection([float(v) for v in direction])
    half_extent = (np.asarray(size) - 1) / 2.0 * spacing_mm
    image.SetOrigin(tuple(-np.reshape(direction, (3, 3)) @ half_extent))
    return image


def physical_coordinates(image: sitk.Image) -> np.ndarray:
    """LPS mm of every voxel centre, shape (z, y, x, 3), through origin/spacing/direction."""
    k, j, i = np.indices(image.GetSize()[::-1])
    index_xyz = np.stack([i, j, k], axis=-1) * np.asarray(image.GetSpacing())
    direction = np.reshape(image.GetDirection(), (3, 3))
    return np.asarray(image.GetOrigin()) + index_xyz @ direction.T


def with_values(image: sitk.Image, values: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(values.astype(np.float32))
    out.CopyInformation(image)
    return out


def blob_phantom(points: list[LpsPoint], **kwargs: object) -> sitk.Image:
    """Water with a Gaussian blob (+1000 HU peak, SD 3 mm) at each point."""
    base = phantom(**kwargs)  # type: ignore[arg-type]
    xyz = physical_coordinates(base)
    values = np.zeros(xyz.shape[:3])
    for p in points:
        values += 1000.0 * np.exp(-np.sum((xyz - p.as_array()) ** 2, axis=-1) / (2 * 3.0**2))
    return with_values(base, values)


def blob_centroids(image: sitk.Image) -> list[np.ndarray]:
    """Centroid (LPS mm) of each bright blob: weights max(value, 0) in a ±12 mm box at its peak."""
    a = sitk.GetArrayFromImage(image).astype(np.float64)
    labels, count = ndimage.label(a > 0.3 * a.max())
    xyz = physical_coordinates(image)
    half = np.ceil(12.0 / np.asarray(image.GetSpacing()[::-1])).astype(int)
    centroids = []
    for peak in ndimage.maximum_position(a, labels, range(1, count + 1)):
        box = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(peak, half, strict=True))
        weights = np.clip(a[box], 0.0, None)
        centroids.append(np.tensordot(weights, xyz[box], axes=3) / weights.sum())
    return centroids


def grid_center(image: sitk.Image) -> np.ndarray:
    middle = [(n - 1) / 2.0 for n in image.GetSize()]
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(middle))


def value_at(image: sitk.Image, point: np.ndarray) -> float:
    index = image.TransformPhysicalPointToIndex(tuple(float(v) for v in point))
    return float(image[index])


def radius_from_axis_mm(image: sitk.Image) -> np.ndarray:
    """Distance of each voxel centre from the grid's z axis, shape (z, y, x)."""
    xyz = physical_coordinates(image)
    return np.hypot(xyz[..., 0] - grid_center(image)[0], xyz[..., 1] - grid_center(image)[1])


# ---- known motions -------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2], ids=["x", "y", "z"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
@pytest.mark.parametrize("slice_mm", [2.0, 4.0, 6.0])
def test_a_blob_moved_by_a_translation_is_found_at_p_plus_t(
    axis: int, sign: float, slice_mm: float
) -> None:
    p = LpsPoint(10.0, -8.0, 6.0)
    t = np.zeros(3)
    t[axis] = sign * 7.3
    motion = RigidTransformLps.from_rotation_translation(np.eye(3), t)
    options = replace(EXACT, slice_spacing_mm=slice_mm)

    daily = simulate_mvct(blob_phantom([p]), motion, options)

    (found,) = blob_centroids(daily)
    np.testing.assert_allclose(found, p.as_array() + t, atol=0.1)


def test_blobs_rotated_about_an_off_centre_point_are_found_at_m_times_p() -> None:
    points = [LpsPoint(-30.0, 25.0, -12.0), LpsPoint(32.0, 12.0, 15.0), LpsPoint(5.0, -38.0, 0.0)]
    rotation = rot_z(4.0) @ rot_y(-3.0) @ rot_x(5.0)
    motion = rigid_about(LpsPoint(15.0, -20.0, 8.0), rotation, (3.0, -2.0, 4.0))

    daily = simulate_mvct(blob_phantom(points), motion, EXACT)

    found = blob_centroids(daily)
    assert len(found) == len(points)
    for p in points:
        expected = motion.apply(p).as_array()
        nearest = min(found, key=lambda c: float(np.linalg.norm(c - expected)))
        assert np.linalg.norm(nearest - expected) < 0.1, (p, expected, nearest)


def test_a_planning_ct_with_flipped_axes_gives_the_same_physical_answer() -> None:
    p = LpsPoint(-14.0, 20.0, -5.0)
    motion = rigid_about(LpsPoint(0.0, 0.0, 0.0), rot_z(3.0), (2.0, 5.0, -3.0))
    flipped = blob_phantom([p], direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))

    daily = simulate_mvct(flipped, motion, EXACT)

    (found,) = blob_centroids(daily)
    np.testing.assert_allclose(found, motion.apply(p).as_array(), atol=0.1)


# ---- grid ----------------------------------------------------------------------------------


def test_the_daily_grid_is_axial_with_the_requested_spacing_and_length() -> None:
    options = MvctSimulationOptions(pixel_spacing_mm=2.0, slice_spacing_mm=6.0, scan_length_mm=90.0)

    daily = simulate_mvct(phantom(), RigidTransformLps.identity(), options)

    assert daily.GetSize() == (200, 200, 15)
    assert daily.GetSpacing() == pytest.approx((2.0, 2.0, 6.0))
    assert daily.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert daily.GetPixelID() == sitk.sitkFloat32


def test_the_daily_grid_is_centred_on_the_scan_centre_mapped_through_the_motion() -> None:
    center = LpsPoint(12.0, -7.0, 9.0)
    motion = rigid_about(LpsPoint(-5.0, 3.0, 0.0), rot_x(4.0) @ rot_z(-2.0), (6.0, -4.0, 10.0))
    options = replace(EXACT, scan_center=center)

    daily = simulate_mvct(phantom(), motion, options)

    np.testing.assert_allclose(grid_center(daily), motion.apply(center).as_array(), atol=1e-6)


def test_the_default_scan_centre_is_the_centre_of_the_planning_volume() -> None:
    planning = phantom()
    planning.SetOrigin(tuple(np.add(planning.GetOrigin(), (30.0, -20.0, 50.0))))
    motion = RigidTransformLps.from_rotation_translation(np.eye(3), np.array([1.0, 2.0, 3.0]))

    daily = simulate_mvct(planning, motion, EXACT)

    np.testing.assert_allclose(grid_center(daily), [31.0, -18.0, 53.0], atol=1e-6)


# ---- field of view, air, padding ------------------------------------------------------------


@pytest.mark.parametrize("padding", [-1024.0, -1000.0, 0.0])
def test_voxels_outside_the_fov_circle_hold_the_padding_value_and_none_inside_do(
    padding: float,
) -> None:
    options = MvctSimulationOptions(
        pixel_spacing_mm=2.0, fov_diameter_mm=200.0, scan_length_mm=40.0, padding_value_hu=padding
    )

    daily = simulate_mvct(phantom(), RigidTransformLps.identity(), options)

    values = sitk.GetArrayFromImage(daily)
    outside = radius_from_axis_mm(daily) > 100.0
    assert outside.any()
    assert np.all(values[outside] == np.float32(padding))
    assert not np.any(values[~outside] == np.float32(padding))


def test_fov_voxels_the_planning_ct_does_not_cover_are_air_not_padding() -> None:
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0, fov_diameter_mm=200.0, scan_length_mm=40.0, noise_hu=0.0
    )  # the phantom is 128 mm wide: 70-95 mm from the axis is inside the FOV but not the CT

    daily = simulate_mvct(phantom(), RigidTransformLps.identity(), options)

    values = sitk.GetArrayFromImage(daily)
    radius = radius_from_axis_mm(daily)
    beyond_ct = (radius > 70.0) & (radius < 95.0)
    xyz = physical_coordinates(daily)
    beyond_ct &= np.max(np.abs(xyz[..., :2]), axis=-1) > 70.0
    assert beyond_ct.sum() > 1000
    np.testing.assert_allclose(values[beyond_ct], -1000.0, atol=1e-3)
    assert np.all(values[radius > 100.0] == np.float32(-1024.0))


def test_a_scan_that_misses_the_planning_ct_is_refused() -> None:
    far = MvctSimulationOptions(scan_center=LpsPoint(0.0, 0.0, 500.0))
    with pytest.raises(InputError, match="does not overlap the planning CT"):
        simulate_mvct(phantom(), RigidTransformLps.identity(), far)


# ---- contrast, cupping, noise --------------------------------------------------------------


def test_a_bone_insert_loses_contrast_and_lung_and_fat_keep_their_numbers() -> None:
    base = phantom()
    xyz = physical_coordinates(base)
    values = np.zeros(xyz.shape[:3])
    inserts = {1000.0: (0.0, 0.0), -700.0: (-35.0, 0.0), -100.0: (35.0, 0.0)}
    for hu, (x, y) in inserts.items():
        inside = (np.abs(xyz[..., 0] - x) < 11) & (np.abs(xyz[..., 1] - y) < 11)
        values[inside & (np.abs(xyz[..., 2]) < 20)] = hu
    options = replace(EXACT, slice_spacing_mm=4.0)

    daily = simulate_mvct(with_values(base, values), RigidTransformLps.identity(), options)

    bone = value_at(daily, np.array([0.0, 0.0, 0.0]))
    assert bone == pytest.approx(1000.0 * 1000.0 / 1950.0, abs=2.0)
    assert bone < 0.6 * 1000.0
    assert value_at(daily, np.array([-35.0, 0.0, 0.0])) == pytest.approx(-700.0, abs=2.0)
    assert value_at(daily, np.array([35.0, 0.0, 0.0])) == pytest.approx(-100.0, abs=2.0)
    assert value_at(daily, np.array([0.0, 40.0, 0.0])) == pytest.approx(0.0, abs=2.0)


def test_cupping_darkens_water_at_the_centre_quadratically_in_radius() -> None:
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0, fov_diameter_mm=110.0, scan_length_mm=40.0, noise_hu=0.0
    )  # the FOV circle (radius 55 mm) lies inside the 128 mm water box

    daily = simulate_mvct(phantom(0.0), RigidTransformLps.identity(), options)

    values = sitk.GetArrayFromImage(daily)
    radius = radius_from_axis_mm(daily)
    assert values[radius < 3.0].mean() == pytest.approx(-30.0, abs=0.5)
    ring = np.abs(radius - 0.8 * 55.0) < 1.0
    assert values[ring].mean() == pytest.approx(-30.0 * (1 - 0.8**2), abs=0.5)


@pytest.mark.parametrize("noise_hu", [25.0, 40.0, 50.0])
def test_noise_sd_in_a_uniform_water_cylinder_is_the_requested_sd(noise_hu: float) -> None:
    base = phantom()
    xyz = physical_coordinates(base)
    cylinder = np.where(np.hypot(xyz[..., 0], xyz[..., 1]) < 55.0, 0.0, -1000.0)
    options = MvctSimulationOptions(
        pixel_spacing_mm=0.78, scan_length_mm=40.0, noise_hu=noise_hu, cupping_hu=0.0
    )

    daily = simulate_mvct(with_values(base, cylinder), RigidTransformLps.identity(), options)

    values = sitk.GetArrayFromImage(daily)
    central = values[radius_from_axis_mm(daily) < 40.0]
    assert central.std() == pytest.approx(noise_hu, rel=0.2)
    assert abs(central.mean()) < 2.0


def test_noise_is_correlated_between_neighbours_only() -> None:
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0, fov_diameter_mm=100.0, scan_length_mm=40.0, cupping_hu=0.0
    )

    daily = simulate_mvct(phantom(0.0), RigidTransformLps.identity(), options)

    noise = sitk.GetArrayFromImage(daily)[:, 20:80, 20:80].astype(np.float64)

    def correlation(lag: int) -> float:
        a, b = noise[:, :, :-lag].ravel(), noise[:, :, lag:].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert 0.15 < correlation(1) < 0.4  # a Gaussian of SD 0.5 px gives about 0.26
    assert abs(correlation(3)) < 0.03


def test_the_same_seed_gives_the_same_image_and_another_seed_another() -> None:
    options = MvctSimulationOptions(pixel_spacing_mm=2.0, scan_length_mm=40.0, random_seed=7)
    motion = rigid_about(LpsPoint(0.0, 0.0, 0.0), rot_y(2.0), (1.0, 2.0, 3.0))

    first = sitk.GetArrayFromImage(simulate_mvct(phantom(), motion, options))
    again = sitk.GetArrayFromImage(simulate_mvct(phantom(), motion, options))
    other_options = replace(options, random_seed=8)
    other = sitk.GetArrayFromImage(simulate_mvct(phantom(), motion, other_options))

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# ---- the calibration -----------------------------------------------------------------------


def test_the_calibration_keeps_negative_numbers_and_compresses_positive_ones() -> None:
    hu = np.array([-3024.0, -1024.0, -1000.0, -700.0, -100.0, 0.0, 40.0, 1000.0, 1950.0])
    expected = [-1000.0, -1000.0, -1000.0, -700.0, -100.0, 0.0, 40 / 1.95, 1000 / 1.95, 1000.0]
    np.testing.assert_allclose(harmonise_kv_to_mv(hu), expected, rtol=1e-6)
    assert harmonise_kv_to_mv(np.zeros((2, 3), dtype=np.int16)).dtype == np.float32


@given(st.lists(st.floats(-4000, 4000, allow_nan=False, width=32), min_size=2, max_size=50))
def test_the_calibration_is_monotonic_and_never_brighter_than_kv(values: list[float]) -> None:
    hu = np.sort(np.asarray(values, dtype=np.float32))
    mv = harmonise_kv_to_mv(hu)
    assert np.all(np.diff(mv) >= 0)
    assert np.all(mv <= np.maximum(hu, -1000.0))


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(simulate).failed == 0


# ---- motions -------------------------------------------------------------------------------


def test_rigid_about_moves_the_centre_by_the_translation_and_rotates_about_it() -> None:
    center = LpsPoint(10.0, -20.0, 30.0)
    rotation = rot_z(90.0)
    motion = rigid_about(center, rotation, (1.0, 2.0, 3.0))

    np.testing.assert_allclose(motion.apply(center).as_array(), [11.0, -18.0, 33.0])
    beside = LpsPoint(20.0, -20.0, 30.0)  # 10 mm along +x from the centre ends up along +y
    np.testing.assert_allclose(motion.apply(beside).as_array(), [11.0, -8.0, 33.0], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_translation_mm=st.floats(0.0, 20.0),
    max_rotation_deg=st.floats(0.0, 10.0),
    center=st.tuples(*[st.floats(-500, 500)] * 3),
)
def test_random_motions_stay_within_their_bounds(
    seed: int,
    max_translation_mm: float,
    max_rotation_deg: float,
    center: tuple[float, float, float],
) -> None:
    c = LpsPoint(*center)
    motion = random_motion(np.random.default_rng(seed), max_translation_mm, max_rotation_deg, c)

    shift = motion.apply(c).as_array() - c.as_array()
    assert np.all(np.abs(shift) <= max_translation_mm + 1e-9)
    # R = Rz(a_z)·Ry(a_y)·Rx(a_x) is scipy's extrinsic "xyz" sequence: an independent reference.
    angles = Rotation.from_matrix(motion.rotation).as_euler("xyz", degrees=True)
    assert np.all(np.abs(angles) <= max_rotation_deg + 1e-6)
    again = random_motion(np.random.default_rng(seed), max_translation_mm, max_rotation_deg, c)
    assert again == motion


def test_random_motions_use_the_whole_range() -> None:
    rng = np.random.default_rng(3)
    motions = [random_motion(rng, 10.0, 3.0, LpsPoint(0, 0, 0)) for _ in range(200)]
    shifts = np.array([m.translation_mm for m in motions])
    angles = np.array([Rotation.from_matrix(m.rotation).as_euler("xyz", True) for m in motions])
    assert np.all(shifts.max(axis=0) > 8.0) and np.all(shifts.min(axis=0) < -8.0)
    assert np.all(angles.max(axis=0) > 2.4) and np.all(angles.min(axis=0) < -2.4)


@pytest.mark.parametrize(
    ("field", "value"),
    [("pixel_spacing_mm", 0.0), ("slice_spacing_mm", -2.0), ("noise_hu", float("nan"))],
)
def test_impossible_options_are_refused_with_the_field_named(field: str, value: float) -> None:
    with pytest.raises(InputError, match=field):
        MvctSimulationOptions(**{field: value})  # type: ignore[arg-type]


# ---- real CT ------------------------------------------------------------------------------


@pytest.mark.skipif(not THORAX.is_dir(), reason=f"real thorax CT not found at {THORAX}")
def test_a_real_thorax_ct_is_simulated_and_matches_an_independent_resampling() -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(THORAX)))
    planning = reader.Execute()
    motion = rigid_about(LpsPoint(0.0, 80.0, -20.0), rot_z(2.0) @ rot_x(-1.5), (4.0, -3.0, 6.0))

    daily = simulate_mvct(planning, motion)

    assert daily.GetSize() == (513, 513, 30)
    assert daily.GetSpacing() == pytest.approx((0.78, 0.78, 4.0))
    values = sitk.GetArrayFromImage(daily)[:, ::4, ::4]
    xyz = physical_coordinates(daily)[:, ::4, ::4]
    inside = radius_from_axis_mm(daily)[:, ::4, ::4] < 190.0

    def reference(planning_to_daily: RigidTransformLps) -> np.ndarray:
        """kV→MV numbers at M⁻¹·q by scipy (identity-direction planning CT)."""
        p = planning_to_daily.inverse().apply_array(xyz[inside])
        index = (p - np.asarray(planning.GetOrigin())) / np.asarray(planning.GetSpacing())
        hu = sitk.GetArrayViewFromImage(planning)
        return ndimage.map_coordinates(
            harmonise_kv_to_mv(hu), index[:, ::-1].T, order=1, mode="constant", cval=-1000.0
        )

    right = np.corrcoef(values[inside], reference(motion))[0, 1]
    wrong = np.corrcoef(values[inside], reference(motion.inverse()))[0, 1]
    assert right > 0.9
    assert right > wrong + 0.05
