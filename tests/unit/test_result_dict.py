"""A result survives its JSON form: what ``to_dict`` writes, ``from_dict`` reads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registration.couch import CouchCorrection, Dof
from registration.frames import PatientPosition, iec_rotation_matrix
from registration.geometry import LpsPoint, RigidTransformLps
from registration.result import Mode, RegistrationQuality, RegistrationResult

_mm = st.floats(min_value=-500.0, max_value=500.0, allow_nan=False, allow_infinity=False)
_deg = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False, allow_infinity=False)
_corrections = st.builds(CouchCorrection, _mm, _mm, _mm, _deg, _deg, _deg)


@st.composite
def _transforms(draw: st.DrawFn) -> RigidTransformLps:
    rotation = iec_rotation_matrix(draw(_deg), draw(_deg), draw(_deg))
    return RigidTransformLps.from_rotation_translation(rotation, [draw(_mm), draw(_mm), draw(_mm)])


_results = st.builds(
    RegistrationResult,
    planning_to_daily_lps=_transforms(),
    couch_correction=_corrections,
    couch_correction_6dof=_corrections,
    isocenter_lps_mm=st.builds(LpsPoint, _mm, _mm, _mm),
    patient_position=st.sampled_from(PatientPosition),
    dof=st.sampled_from(Dof),
    mode=st.sampled_from(Mode),
    quality=st.builds(
        RegistrationQuality,
        final_metric=st.floats(min_value=0.0, max_value=5.0),
        overlap_fraction=st.floats(min_value=0.0, max_value=1.0),
        iterations=st.integers(min_value=0, max_value=10_000),
        seconds=st.floats(min_value=0.0, max_value=600.0),
        second_estimate_disagreement_mm=st.none() | st.floats(min_value=0.0, max_value=100.0),
        converged=st.booleans(),
    ),
    trusted=st.booleans(),
    warnings=st.lists(st.text(max_size=40), max_size=3).map(tuple),
    engine_version=st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(_results)
def test_the_json_form_reads_back_to_the_same_json_form(result: RegistrationResult) -> None:
    written = json.loads(json.dumps(result.to_dict()))
    read = RegistrationResult.from_dict(written)
    assert read.to_dict() == written
    assert read.patient_position is result.patient_position
    assert read.dof is result.dof
    assert read.mode is result.mode
    assert read.couch_correction == result.couch_correction.rounded()


def test_a_stored_result_without_a_couch_axis_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="roll_deg"):
        CouchCorrection.from_dict(
            {"lateral_mm": 1, "longitudinal_mm": 0, "vertical_mm": 0, "pitch_deg": 0, "yaw_deg": 0}
        )


def test_the_margin_rule_looks_at_translations_only_and_is_strict() -> None:
    assert not CouchCorrection(5.0, -5.0, 5.0, 30.0, 30.0, 30.0).exceeds_margin(5.0)
    assert CouchCorrection(0.0, 0.0, -5.01, 0.0, 0.0, 0.0).exceeds_margin(5.0)
    assert CouchCorrection.AXES[:3] == CouchCorrection.TRANSLATION_AXES
