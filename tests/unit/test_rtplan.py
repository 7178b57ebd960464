"""RT Plan reading: the real dicompyler plan's isocentre, several isocentres, choosing one."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from registration.errors import PlanningPackageError, PlanningSelectionError
from registration.geometry import LpsPoint
from registration.rt_dataset import RT_PLAN_STORAGE
from registration.rtplan import plan_isocenter, read_rt_plan

RT_OBJECTS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rt_objects_dicompyler"
)
needs_rt_objects = pytest.mark.skipif(
    not (RT_OBJECTS / "rtplan.dcm").exists(), reason="../shared/data/rt_objects_dicompyler absent"
)


@needs_rt_objects
def test_the_real_plan_has_one_isocentre_shared_by_its_four_beams() -> None:
    plan = read_rt_plan(RT_OBJECTS / "rtplan.dcm")
    # IsocenterPosition of every beam's first control point, read with pydicom:
    # ['72.5304715048', '-304.3445582552', '-9.3092401018882'] (4 beams, txmachine, UNAPPROVED)
    assert len(plan.isocenters) == 1
    assert plan.isocenters[0].beam_numbers == (1, 2, 3, 4)
    assert plan_isocenter(plan) == LpsPoint(72.5304715048, -304.3445582552, -9.3092401018882)
    assert plan.machine_name == "txmachine"
    assert plan.approval_status == "UNAPPROVED"
    assert plan.label == "B1"
    assert plan.frame_of_reference_uid == "2.16.840.1.113662.2.12.0.3057.1241703565.36"
    assert plan.referenced_structure_set_uids == ("1.2.246.352.71.4.320687012.3190.20090511122144",)


def plan_with_isocentres(*points: tuple[float, float, float]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = RT_PLAN_STORAGE
    ds.SOPInstanceUID = "1.2.3.4"
    beams = []
    for n, point in enumerate(points, start=1):
        beam = Dataset()
        beam.BeamNumber = n
        beam.TreatmentMachineName = "Tomo1"
        control_point = Dataset()
        control_point.IsocenterPosition = list(point)
        beam.ControlPointSequence = Sequence([control_point])
        beams.append(beam)
    ds.BeamSequence = Sequence(beams)
    return ds


def test_isocentres_within_a_tenth_of_a_millimetre_are_one() -> None:
    plan = read_rt_plan(plan_with_isocentres((1.0, 2.0, 3.0), (1.05, 2.0, 3.0)))
    assert plan_isocenter(plan) == LpsPoint(1.0, 2.0, 3.0)


def test_several_isocentres_are_an_error_listing_them() -> None:
    plan = read_rt_plan(plan_with_isocentres((1.0, 2.0, 3.0), (1.0, 2.0, 43.0)))
    with pytest.raises(PlanningSelectionError, match=r"2 isocentres \(1\.0, 2\.0, 3\.0\); \(1\.0"):
        plan_isocenter(plan)
    try:
        plan_isocenter(plan)
    except PlanningSelectionError as error:
        assert error.choices == ("1.0, 2.0, 3.0", "1.0, 2.0, 43.0")


def test_a_chosen_isocentre_picks_one_of_several_and_a_wrong_choice_is_refused() -> None:
    plan = read_rt_plan(plan_with_isocentres((1.0, 2.0, 3.0), (1.0, 2.0, 43.0)))
    assert plan_isocenter(plan, LpsPoint(1.0, 2.0, 43.05)) == LpsPoint(1.0, 2.0, 43.0)
    with pytest.raises(PlanningSelectionError, match="not one of"):
        plan_isocenter(plan, LpsPoint(1.0, 2.0, 20.0))


def test_a_plan_without_isocentre_asks_for_one() -> None:
    with pytest.raises(PlanningPackageError, match="no IsocenterPosition"):
        plan_isocenter(read_rt_plan(plan_with_isocentres()))


def test_a_structure_set_file_is_not_read_as_a_plan() -> None:
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    with pytest.raises(PlanningPackageError, match="not an RT Plan"):
        read_rt_plan(ds)


@needs_rt_objects
def test_a_plan_uploaded_as_bytes_or_an_open_file_reads_the_same() -> None:
    path = RT_OBJECTS / "rtplan.dcm"
    from_bytes = read_rt_plan(path.read_bytes())
    with path.open("rb") as handle:
        from_file = read_rt_plan(handle)
    assert from_bytes == from_file == read_rt_plan(path)


def test_bytes_that_are_not_dicom_are_refused_as_an_upload() -> None:
    with pytest.raises(PlanningPackageError, match="the uploaded file cannot be read as DICOM"):
        read_rt_plan(b"not a dicom file at all")
