"""The sample planning package (sample_images/rtstruct.dcm, rtplan.dcm) fits the sample CT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from registration.dicom_series import read_ct_series
from registration.geometry import LpsPoint
from registration.planning_package import CtIdentity, check_planning_package
from registration.residuals import structure_surfaces
from registration.rtplan import plan_isocenter, read_rt_plan
from registration.rtstruct import read_structure_set

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"


def test_the_sample_structures_and_plan_belong_to_the_sample_ct_and_its_isocentre() -> None:
    ct = read_ct_series(SAMPLES / "planning")
    structure_set = read_structure_set(SAMPLES / "rtstruct.dcm")
    plan = read_rt_plan(SAMPLES / "rtplan.dcm")
    assert check_planning_package(CtIdentity.of(ct), structure_set, plan) == ()
    truth = json.loads((SAMPLES / "truth.json").read_text())
    assert plan_isocenter(plan) == LpsPoint.from_array(truth["isocenter_lps_mm"])
    assert structure_set.names == ("BODY", "PTV", "SpinalCord")
    surfaces = {s.name: s.points_lps_mm for s in structure_surfaces(structure_set, ct.image)}
    iso = np.array(truth["isocenter_lps_mm"])
    # the PTV is the 30 mm sphere around the isocentre: its surface voxels within a voxel of it
    radius_mm = np.linalg.norm(surfaces["PTV"] - iso, axis=1)
    assert radius_mm.max() <= 30.0 and radius_mm.min() >= 30.0 - 2.0 * np.sqrt(3)
    assert set(surfaces) == {"BODY", "PTV", "SpinalCord"}


@pytest.mark.parametrize("name", ["rtstruct.dcm", "rtplan.dcm"])
def test_the_sample_rt_objects_stay_small(name: str) -> None:
    assert (SAMPLES / name).stat().st_size < 1_000_000
