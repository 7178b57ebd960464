"""Writing an RT Structure Set and RT Plan for the real thorax CT, and reading them back.

Structures are built on the real CT (../shared/data/thorax_4dct_phase00_dicom, block-averaged
2 × 2 in-plane to keep the test fast): the body by threshold, bone, a PTV sphere around a chosen
isocentre and a cord-like cylinder in the spinal canal (found by looking at the images: canal
centre about x = −5 mm, y = 146 mm LPS from z = −150 to 40 mm).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.spatial import cKDTree

from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.geometry import LpsPoint
from registration.planning_package import CtIdentity, check_planning_package
from registration.rt_raster import (
    BoolArray,
    planning_region_mask,
    rasterize_structure,
    surface_points_lps_mm,
)
from registration.rt_write import RoiMask, write_rt_plan, write_rt_structure_set
from registration.rtplan import plan_isocenter, read_rt_plan
from registration.rtstruct import StructureSet, read_structure_set
from registration.synthetic_structures import body_mask, bone_mask, cylinder_mask, sphere_mask
from registration.volume import CtVolume

THORAX = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "thorax_4dct_phase00_dicom"
)
ISOCENTER = LpsPoint(0.0, 60.0, -40.0)
pytestmark = pytest.mark.skipif(not THORAX.exists(), reason="../shared/data thorax CT absent")


@dataclass(frozen=True)
class Package:
    ct: CtVolume
    ct_folder: Path
    rois: tuple[RoiMask, ...]
    rtss: Path
    rtplan: Path
    structure_set: StructureSet


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    folder = tmp_path_factory.mktemp("planning")
    thorax = read_ct_series(THORAX)
    write_ct_series(
        sitk.BinShrink(thorax.image, [2, 2, 1]),
        folder / "ct",
        patient_position=thorax.patient_position,
        patient_id="RT-WRITE-01",
    )
    ct = read_ct_series(folder / "ct")
    image = ct.image
    rois = (
        RoiMask("BODY", "EXTERNAL", (0, 255, 0), body_mask(image)),
        RoiMask("Bones", "ORGAN", (230, 230, 200), bone_mask(image)),
        RoiMask("PTV", "PTV", (255, 0, 0), sphere_mask(image, ISOCENTER, 30.0)),
        RoiMask("SpinalCord", "ORGAN", (255, 255, 0), cylinder_mask(image, -5, 146, 5, -150, 40)),
    )
    rtss = folder / "rtss.dcm"
    dataset = write_rt_structure_set(rtss, ct, rois, patient_name="Test^Thorax")
    rtplan = folder / "rtplan.dcm"
    write_rt_plan(rtplan, ct, dataset, ISOCENTER, patient_name="Test^Thorax")
    return Package(ct, folder / "ct", rois, rtss, rtplan, read_structure_set(rtss))


def dice(a: BoolArray, b: BoolArray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def surface_distance_mm(a: BoolArray, b: BoolArray, grid: sitk.Image) -> float:
    """Largest distance (mm) from a boundary voxel of one mask to the boundary of the other."""
    pa, pb = surface_points_lps_mm(a, grid), surface_points_lps_mm(b, grid)
    return max(
        float(cKDTree(pb).query(pa)[0].max()),
        float(cKDTree(pa).query(pb)[0].max()),
    )


def test_rasterised_contours_give_back_the_source_masks(package: Package) -> None:
    voxel_mm = max(package.ct.image.GetSpacing())
    for roi in package.rois:
        back = rasterize_structure(package.structure_set.structure(roi.name), package.ct.image)
        assert dice(back, roi.mask) >= 0.97, roi.name
        assert surface_distance_mm(back, roi.mask, package.ct.image) <= voxel_mm, roi.name


def test_the_structures_are_what_their_names_say_on_the_real_ct(package: Package) -> None:
    hu = sitk.GetArrayFromImage(package.ct.image)
    masks = {roi.name: roi.mask for roi in package.rois}
    assert masks["BODY"].sum() * np.prod(package.ct.image.GetSpacing()) > 5e6  # > 5 litres
    assert np.median(hu[masks["Bones"]]) > 300
    assert -100 < np.median(hu[masks["SpinalCord"]]) < 150  # soft tissue inside the canal
    assert masks["SpinalCord"].sum() > 0 and not (masks["SpinalCord"] & ~masks["BODY"]).any()


def test_names_types_and_colours_survive_the_round_trip(package: Package) -> None:
    read = [(s.name, s.interpreted_type, s.color_rgb) for s in package.structure_set.structures]
    assert read == [(r.name, r.interpreted_type, r.color_rgb) for r in package.rois]


def test_every_contour_lies_on_the_ct_slice_it_references(package: Package) -> None:
    slice_z = {
        ds.SOPInstanceUID: float(ds.ImagePositionPatient[2])
        for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in package.ct_folder.iterdir())
    }
    raw = pydicom.dcmread(package.rtss)
    checked = 0
    for roi in raw.ROIContourSequence:
        for contour in roi.ContourSequence:
            uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            assert float(contour.ContourData[2]) == pytest.approx(slice_z[uid], abs=1e-3)
            checked += 1
    assert checked > 100


def test_the_plan_carries_the_isocentre_and_the_package_checks_pass(package: Package) -> None:
    plan = read_rt_plan(package.rtplan)
    assert plan_isocenter(plan) == ISOCENTER
    assert plan.referenced_structure_set_uids == (package.structure_set.sop_instance_uid,)
    ct = CtIdentity.of(package.ct)
    assert check_planning_package(ct, package.structure_set, plan) == ()


def test_the_match_region_is_the_ptv_grown_by_the_margin(package: Package) -> None:
    region = planning_region_mask(package.structure_set, "PTV", package.ct.image)
    expected = sphere_mask(package.ct.image, ISOCENTER, 30.0 + 15.0)
    assert dice(sitk.GetArrayFromImage(region).astype(bool), expected) > 0.97


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) absent")
@pytest.mark.parametrize("name", ["rtss", "rtplan"])
def test_dciodvfy_finds_no_error_in_the_written_object(package: Package, name: str) -> None:
    path = package.rtss if name == "rtss" else package.rtplan
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "Error" not in report, report
    assert ("RTStructureSet" if name == "rtss" else "RTPlan") in report
