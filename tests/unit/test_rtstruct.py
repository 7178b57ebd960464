"""RT Structure Set reading and rasterisation: the real dicompyler structure set, holes, planes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from registration.errors import ContourPlaneError, PlanningPackageError
from registration.geometry import LpsPoint
from registration.rt_raster import (
    mask_image,
    planning_region_mask,
    rasterize_structure,
    resample_mask,
    sphere_surface_points_lps_mm,
    surface_points_lps_mm,
)
from registration.rtstruct import PlanarContour, Structure, StructureSet, read_structure_set

RT_OBJECTS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rt_objects_dicompyler"
)
needs_rt_objects = pytest.mark.skipif(
    not (RT_OBJECTS / "rtss.dcm").exists(), reason="../shared/data/rt_objects_dicompyler absent"
)

# Read once with pydicom during development (ROINumber, ROIName, RTROIInterpretedType,
# ROIDisplayColor, len(ContourSequence)) and written here as the truth.
DICOMPYLER_ROIS = [
    (1, "BODY", "EXTERNAL", (154, 155, 100), 141),
    (2, "Areola", "AVOIDANCE", (255, 204, 255), 0),
    (3, "Borders", "CTV", (255, 255, 255), 2),
    (4, "Breast", "GTV", (255, 128, 128), 48),
    (5, "Heart", "ORGAN", (255, 128, 0), 33),
    (6, "Lt Lung", "AVOIDANCE", (128, 128, 255), 165),
    (7, "Nodes", "AVOIDANCE", (128, 128, 255), 4),
    (8, "Scar", "AVOIDANCE", (255, 255, 0), 6),
    (9, "Tumor Bed", "CTV", (255, 0, 0), 18),
    (10, "Tumor Bed Block", "GTV", (255, 196, 255), 24),
]
DICOMPYLER_FRAME = "2.16.840.1.113662.2.12.0.3057.1241703565.36"
DICOMPYLER_CT_SERIES = "2.16.840.1.113662.2.12.0.3057.1241703565.43"


def grid(size: tuple[int, int, int] = (20, 20, 3), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.Image(size, sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def square(x0: float, x1: float, y0: float, y1: float, z: float) -> PlanarContour:
    return PlanarContour(np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float))


def structure(*contours: PlanarContour, name: str = "PTV", kind: str = "PTV") -> Structure:
    return Structure(1, name, kind, (255, 0, 0), contours)


@needs_rt_objects
def test_every_roi_of_the_real_structure_set_is_read_with_type_colour_and_contour_count() -> None:
    structure_set = read_structure_set(RT_OBJECTS / "rtss.dcm")
    found = [
        (s.roi_number, s.name, s.interpreted_type, s.color_rgb, len(s.contours))
        for s in structure_set.structures
    ]
    assert found == DICOMPYLER_ROIS
    assert structure_set.frame_of_reference_uid == DICOMPYLER_FRAME
    assert structure_set.referenced_series_uids == (DICOMPYLER_CT_SERIES,)
    assert structure_set.approval_status == "APPROVED"
    assert structure_set.patient_id == "123456"


@needs_rt_objects
def test_contour_points_are_the_file_s_contour_data_in_lps_mm() -> None:
    raw = pydicom.dcmread(RT_OBJECTS / "rtss.dcm")
    expected = np.array(raw.ROIContourSequence[0].ContourSequence[0].ContourData, float)
    body = read_structure_set(raw).structure("BODY")
    np.testing.assert_array_equal(body.contours[0].points_lps_mm.ravel(), expected)
    # Lt Lung has several contours on some slices: 165 contours on 80 slices
    assert len(read_structure_set(raw).structure("lt lung").contours_by_z()) == 80


@needs_rt_objects
def test_the_real_body_rasterises_inside_its_contour_on_the_one_real_ct_slice() -> None:
    ct = pydicom.dcmread(RT_OBJECTS / "ct.0.dcm")
    spacing = [float(v) for v in ct.PixelSpacing]
    origin = [float(v) for v in ct.ImagePositionPatient]
    image = grid((int(ct.Columns), int(ct.Rows), 1), (spacing[1], spacing[0], 3.0), origin)
    body = read_structure_set(RT_OBJECTS / "rtss.dcm").structure("BODY")
    on_slice = [c for c in body.contours if abs(c.points_lps_mm[0, 2] - origin[2]) < 0.01]
    mask = rasterize_structure(Structure(1, "BODY", "EXTERNAL", None, tuple(on_slice)), image)
    hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    assert mask.sum() > 10_000
    assert np.median(hu[mask[0]]) > -200  # tissue inside the body contour
    assert np.median(hu[~mask[0]]) < -900  # air outside


def test_a_contour_inside_another_on_the_same_slice_is_a_hole() -> None:
    mask = rasterize_structure(
        structure(square(2.5, 12.5, 2.5, 12.5, 2.0), square(5.5, 8.5, 5.5, 8.5, 2.0)), grid()
    )
    assert mask.sum() == 10 * 10 - 3 * 3
    assert not mask[1, 6:9, 6:9].any() and mask[1, 3:13, 3:6].all()
    assert not mask[0].any() and not mask[2].any()


def test_an_island_inside_a_hole_is_inside_again_by_the_even_odd_rule() -> None:
    mask = rasterize_structure(
        structure(
            square(0.5, 16.5, 0.5, 16.5, 0.0),
            square(3.5, 13.5, 3.5, 13.5, 0.0),
            square(6.5, 10.5, 6.5, 10.5, 0.0),
        ),
        grid(),
    )
    assert mask[0].sum() == 16 * 16 - 10 * 10 + 4 * 4
    assert mask[0, 8, 8] and not mask[0, 5, 5] and mask[0, 2, 2]


def test_rasterisation_follows_a_rotated_grid_direction() -> None:
    image = grid((20, 20, 3), origin=(19.0, 0.0, 0.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))  # i runs towards patient right
    mask = rasterize_structure(structure(square(2.5, 6.5, 2.5, 4.5, 2.0)), image)
    k, j, i = np.nonzero(mask)
    assert set(k) == {1} and set(j) == {3, 4}
    assert set(19 - i) == {3, 4, 5, 6}  # x = 19 − i


def test_a_contour_between_slice_planes_is_refused_with_its_distance() -> None:
    with pytest.raises(ContourPlaneError, match=r"ROI 'PTV'.*1\.00 mm off the nearest slice"):
        rasterize_structure(structure(square(2.5, 6.5, 2.5, 6.5, 3.0)), grid())


def test_a_contour_beyond_the_scan_is_refused() -> None:
    with pytest.raises(ContourPlaneError, match="outside the planning CT's 3 slices"):
        rasterize_structure(structure(square(2.5, 6.5, 2.5, 6.5, 8.0)), grid())


def test_a_tilted_contour_is_refused() -> None:
    points = np.array([[2.0, 2.0, 0.0], [8.0, 2.0, 2.0], [8.0, 8.0, 2.0], [2.0, 8.0, 0.0]])
    with pytest.raises(ContourPlaneError, match="not axial"):
        rasterize_structure(structure(PlanarContour(points)), grid())


def test_a_file_that_is_not_a_structure_set_is_refused_naming_its_class() -> None:
    with pytest.raises(PlanningPackageError, match="not an RT Structure Set"):
        read_structure_set(pydicom.Dataset())


def structure_set(*structures: Structure) -> StructureSet:
    return StructureSet("1.2.3", "P1", "", "", None, "APPROVED", "9.9", "", (), structures)


def test_match_structure_ptv_is_the_union_of_every_ptv_type_roi() -> None:
    high = Structure(1, "PTV_high", "PTV", None, (square(2.5, 4.5, 2.5, 4.5, 0.0),))
    low = Structure(2, "PTV_low", "PTV", None, (square(10.5, 12.5, 10.5, 12.5, 0.0),))
    cord = Structure(3, "Cord", "ORGAN", None, (square(15.5, 17.5, 15.5, 17.5, 0.0),))
    package = structure_set(high, low, cord)
    assert package.resolve("PTV") == (high, low)
    region = sitk.GetArrayFromImage(planning_region_mask(package, "ptv", grid(), match_margin_mm=0))
    assert region.sum() == 4 + 4
    with pytest.raises(PlanningPackageError, match=r"'Brainstem' is not in structure set.*'Cord'"):
        package.resolve("Brainstem")


def test_the_planning_region_is_the_structure_grown_by_the_margin_in_mm() -> None:
    image = grid((40, 40, 20), spacing=(1.0, 1.0, 2.0))
    target = Structure(1, "GTV", "GTV", None, (square(19.5, 20.5, 19.5, 20.5, 20.0),))
    region = sitk.GetArrayFromImage(
        planning_region_mask(structure_set(target), "GTV", image, match_margin_mm=5.0)
    )
    k, j, i = np.nonzero(region)
    # the structure is the voxel (20, 20, 10); 5 mm reach 5 voxels in-plane, 2 slices along z
    assert (i.min(), i.max(), j.min(), j.max(), k.min(), k.max()) == (15, 25, 15, 25, 8, 12)
    assert region[10, 20, 25] and not region[10, 24, 24]  # √32 mm > 5 mm


def test_surface_points_are_the_boundary_voxel_centres_in_lps() -> None:
    image = grid((10, 10, 5), spacing=(1.0, 1.0, 1.0), origin=(-5.0, 0.0, 100.0))
    mask = np.zeros((5, 10, 10), bool)
    mask[1:4, 2:5, 2:5] = True  # a 3×3×3 cube: 26 surface voxels, 1 interior
    points = surface_points_lps_mm(mask, image)
    assert points.shape == (26, 3)
    assert not np.any(np.all(points == [-2.0, 3.0, 102.0], axis=1))  # the centre voxel
    assert mask_image(mask, image).GetOrigin() == (-5.0, 0.0, 100.0)


def test_sphere_surface_points_are_on_the_sphere() -> None:
    centre = np.array([10.0, -20.0, 30.0])
    points = sphere_surface_points_lps_mm(LpsPoint.from_array(centre), 50.0, 500)
    np.testing.assert_allclose(np.linalg.norm(points - centre, axis=1), 50.0)
    assert np.all(np.abs(points.mean(axis=0) - centre) < 1.0)


@needs_rt_objects
def test_every_real_roi_rasterises_on_the_real_ct_grid_extended_over_its_slices() -> None:
    ct = pydicom.dcmread(RT_OBJECTS / "ct.0.dcm")
    spacing = [float(v) for v in ct.PixelSpacing]
    x0, y0, z_top = (float(v) for v in ct.ImagePositionPatient)
    # the one real slice is the top one (z = 168.5593); the contours run down to −122.44 mm,
    # i.e. 97 planes of 3 mm below it
    image = grid((int(ct.Columns), int(ct.Rows), 98), (spacing[1], spacing[0], 3.0))
    image.SetOrigin((x0, y0, z_top - 97 * 3.0))
    structure_set = read_structure_set(RT_OBJECTS / "rtss.dcm")
    voxels = {s.name: int(rasterize_structure(s, image).sum()) for s in structure_set.structures}
    assert voxels["Areola"] == 0  # no contours
    assert all(count > 0 for name, count in voxels.items() if name != "Areola")
    voxel_ml = spacing[0] * spacing[1] * 3.0 / 1000.0
    assert 300 < voxels["Heart"] * voxel_ml < 1500  # an adult heart
    assert voxels["Heart"] < voxels["Lt Lung"] < voxels["BODY"]


def test_a_mask_resampled_to_a_coarser_grid_keeps_its_place_in_mm() -> None:
    fine = grid((40, 40, 20), spacing=(1.0, 1.0, 1.0))
    mask = np.zeros((20, 40, 40), bool)
    mask[8:12, 10:20, 24:30] = True  # x 24..29, y 10..19, z 8..11 mm
    coarse = grid((20, 20, 10), spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.5))
    resampled = sitk.GetArrayFromImage(resample_mask(mask_image(mask, fine), coarse))
    k, j, i = np.nonzero(resampled)
    x, y, z = 0.5 + 2 * i, 0.5 + 2 * j, 0.5 + 2 * k
    assert (x.min(), x.max(), y.min(), y.max(), z.min(), z.max()) == (
        24.5,
        28.5,
        10.5,
        18.5,
        8.5,
        10.5,
    )
