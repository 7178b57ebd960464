"""Which received CT series is an MVCT and which the planning CT (app/dicom/rules.py, no I/O)."""

from __future__ import annotations

import doctest
import re

import pytest

import app.dicom.rules
from app.config import Settings
from app.db.models_dicom import SeriesKind
from app.dicom import DicomError
from app.dicom.rules import SeriesFacts, SeriesRules, ae_titles, classify

CTRUE = SeriesRules(mvct_pattern=re.compile("CTrue Image Set", re.IGNORECASE))


def test_the_module_examples_run() -> None:
    assert doctest.testmod(app.dicom.rules).failed == 0


def test_the_sending_ae_decides_before_the_series_description() -> None:
    rules = SeriesRules(
        planning_aes=frozenset({"TPS"}), mvct_pattern=re.compile("CTrue", re.IGNORECASE)
    )
    kind, reason = classify(SeriesFacts("TPS", "CTrue Image Set", 120.0), rules, 0.0)
    assert kind is SeriesKind.PLANNING
    assert "TPS" in reason


def test_a_tomotherapy_mvct_is_recognised_by_its_series_description() -> None:
    kind, _ = classify(SeriesFacts("CONSOLE", "ctrue image set", 300.0), CTRUE, 100.0)
    assert kind is SeriesKind.MVCT


@pytest.mark.parametrize(
    ("extent_mm", "longest_other_mm", "expected"),
    [
        (180.0, 0.0, SeriesKind.PLANNING),
        (120.0, 180.0, SeriesKind.MVCT),
        (180.0, 180.0, SeriesKind.MVCT),
    ],
)
def test_an_unmatched_series_is_the_planning_ct_only_when_it_is_the_longest_of_the_patient(
    extent_mm: float, longest_other_mm: float, expected: SeriesKind
) -> None:
    kind, _ = classify(SeriesFacts("X", "Helical CT", extent_mm), CTRUE, longest_other_mm)
    assert kind is expected


@pytest.mark.parametrize("unmatched", ["planning", "mvct", "ignored"])
def test_the_unmatched_rule_can_name_one_kind_for_every_unmatched_series(unmatched: str) -> None:
    rules = SeriesRules(unmatched="ignore" if unmatched == "ignored" else unmatched)
    kind, _ = classify(SeriesFacts("X", "", 100.0), rules, 500.0)
    assert kind.value == unmatched


def test_bad_patterns_and_ae_titles_are_refused_with_the_setting_named() -> None:
    with pytest.raises(DicomError, match="MVCT_GUIDE_DICOM_MVCT_PATTERN"):
        SeriesRules.from_settings(Settings(dicom_mvct_pattern="CTrue ("))
    with pytest.raises(DicomError, match="not a valid AE title"):
        ae_titles("CONSOLE, A-TITLE-LONGER-THAN-16")
    assert ae_titles(" CONSOLE1,TPS ,") == frozenset({"CONSOLE1", "TPS"})
