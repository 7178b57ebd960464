"""Planning package checks, choosing the structure set / plan, and the isocentre rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from registration.errors import PlanningSelectionError, ReferenceMismatchError
from registration.geometry import LpsPoint
from registration.planning_package import (
    CtIdentity,
    IsocenterSource,
    check_planning_package,
    check_rt_plan,
    check_structure_set,
    decide_isocenter,
    select_rt_plan,
    select_structure_set,
)
from registration.rtplan import PlanIsocenter, RtPlan
from registration.rtstruct import Structure, StructureSet

CT = CtIdentity(patient_id="P1", frame_of_reference_uid="1.1", series_instance_uid="2.2")
STRUCTURES = StructureSet(
    sop_instance_uid="3.3",
    patient_id="P1",
    patient_name="",
    label="RS",
    date_time=datetime(2026, 1, 5, 10, 0),
    approval_status="APPROVED",
    frame_of_reference_uid="1.1",
    referenced_study_uid="",
    referenced_series_uids=("2.2",),
    structures=(),
)
PLAN = RtPlan(
    sop_instance_uid="4.4",
    patient_id="P1",
    patient_name="",
    label="HN",
    name="",
    date_time=datetime(2026, 1, 6, 9, 0),
    approval_status="APPROVED",
    frame_of_reference_uid="1.1",
    referenced_structure_set_uids=("3.3",),
    machine_names=("Tomo1",),
    isocenters=(PlanIsocenter(LpsPoint(0.0, 10.0, -20.0), (1,)),),
)


def test_a_consistent_package_passes_without_warnings() -> None:
    assert check_planning_package(CT, STRUCTURES, PLAN) == ()


def test_a_structure_set_of_another_frame_is_refused_naming_both_uids() -> None:
    other = replace(STRUCTURES, frame_of_reference_uid="9.9")
    with pytest.raises(ReferenceMismatchError, match=r"Frame of Reference 9\.9 .* CT's is 1\.1"):
        check_structure_set(CT, other)


def test_a_structure_set_drawn_on_another_series_is_refused_naming_both() -> None:
    other = replace(STRUCTURES, referenced_series_uids=("7.7",))
    with pytest.raises(ReferenceMismatchError, match=r"series 7\.7 .* CT is series 2\.2"):
        check_structure_set(CT, other)
    assert check_structure_set(CT, other, require_series_match=False) == ()


def test_another_patient_is_refused_naming_both_ids() -> None:
    with pytest.raises(ReferenceMismatchError, match="patient 'P2' but the planning CT to 'P1'"):
        check_rt_plan(CT, replace(PLAN, patient_id="P2"), STRUCTURES)


def test_a_plan_in_another_frame_is_refused_even_when_it_references_the_structure_set() -> None:
    with pytest.raises(ReferenceMismatchError, match=r"Frame of Reference 5\.5 .* CT's is 1\.1"):
        check_rt_plan(CT, replace(PLAN, frame_of_reference_uid="5.5"), STRUCTURES)


def test_a_plan_without_frame_must_reference_the_structure_set() -> None:
    frameless = replace(PLAN, frame_of_reference_uid="")
    assert check_rt_plan(CT, frameless, STRUCTURES) == ()
    with pytest.raises(ReferenceMismatchError, match=r"structure set 8\.8, not 3\.3"):
        check_rt_plan(CT, replace(frameless, referenced_structure_set_uids=("8.8",)), STRUCTURES)


def test_a_plan_in_the_ct_frame_referencing_another_structure_set_is_a_warning() -> None:
    warnings = check_rt_plan(CT, replace(PLAN, referenced_structure_set_uids=("8.8",)), STRUCTURES)
    assert len(warnings) == 1 and "8.8, not 3.3" in warnings[0]


def test_the_latest_approved_plan_is_chosen_over_a_later_unapproved_one() -> None:
    older = replace(PLAN, sop_instance_uid="4.1", date_time=datetime(2026, 1, 1))
    newest_draft = replace(
        PLAN, sop_instance_uid="4.9", date_time=datetime(2026, 2, 1), approval_status="UNAPPROVED"
    )
    assert select_rt_plan([older, PLAN, newest_draft]).chosen is PLAN
    assert select_rt_plan([older, PLAN, newest_draft], named="4.9").chosen is newest_draft


def test_several_unapproved_structure_sets_need_a_name() -> None:
    drafts = [
        replace(STRUCTURES, sop_instance_uid=uid, approval_status="UNAPPROVED")
        for uid in ("3.1", "3.2")
    ]
    with pytest.raises(PlanningSelectionError, match="none is APPROVED"):
        select_structure_set(drafts)
    chosen = select_structure_set(drafts, named="3.2")
    assert chosen.chosen is drafts[1] and "UNAPPROVED" in chosen.warnings[0]


def test_a_single_unapproved_plan_is_used_with_a_warning() -> None:
    selection = select_rt_plan([replace(PLAN, approval_status="UNAPPROVED")])
    assert selection.warnings == ("RT Plan 4.4 is UNAPPROVED, not APPROVED",)


def test_the_request_isocentre_wins_and_warns_beyond_one_millimetre_from_the_plan() -> None:
    plan_iso = LpsPoint(0.0, 10.0, -20.0)
    close = decide_isocenter(
        mvct_centre=LpsPoint(0, 0, 0), request=LpsPoint(0.5, 10.5, -20.0), plan=plan_iso
    )
    assert close.source is IsocenterSource.REQUEST and close.warnings == ()
    far = decide_isocenter(
        mvct_centre=LpsPoint(0, 0, 0), request=LpsPoint(0.0, 10.0, -18.5), plan=plan_iso
    )
    assert far.point == LpsPoint(0.0, 10.0, -18.5)
    assert "1.5 mm from the RT Plan's (0.0, 10.0, -20.0)" in far.warnings[0]
    assert far.untrusted_reason is None


def test_without_request_the_plan_then_the_course_then_the_mvct_centre_is_used() -> None:
    centre, course, plan_iso = LpsPoint(1, 2, 3), LpsPoint(4, 5, 6), LpsPoint(7, 8, 9)
    assert decide_isocenter(mvct_centre=centre, plan=plan_iso, course=course).source == "rtplan"
    assert decide_isocenter(mvct_centre=centre, course=course).source is IsocenterSource.COURSE
    fallback = decide_isocenter(mvct_centre=centre)
    assert fallback.source is IsocenterSource.MVCT_CENTRE and fallback.point == centre
    assert fallback.untrusted_reason is not None and "MVCT centre" in fallback.untrusted_reason


def test_a_roi_drawn_in_another_frame_is_refused_by_name() -> None:
    mr_roi = Structure(7, "GTV_MR", "GTV", None, (), frame_of_reference_uid="6.6")
    with pytest.raises(ReferenceMismatchError, match=r"ROI 'GTV_MR' is in Frame of Reference 6\.6"):
        check_structure_set(CT, replace(STRUCTURES, structures=(mr_roi,)))
