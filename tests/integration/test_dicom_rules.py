"""Which received CT series is an MVCT and which the planning CT (app/dicom/rules.py, no I/O)."""

from __future__ import annotations

import doctest
import re

import pytest
from pydantic import ValidationError

import app.dicom.rules
from app.config import Settings
from app.db.models_dicom import SeriesKind
from app.dicom import DicomError
from app.dicom.rules import SeriesFacts, SeriesRules, ae_titles, allowed_callers, classify

CTRUE = SeriesRules(mvct_pattern=re.compile("CTrue Image Set", re.IGNORECASE))


def test_the_module_examples_run() -> None:
    assert doctest.testmod(app.dicom.rules).failed == 0


def test_the_sending_ae_decides_before_the_series_description() -> None:
    rules = SeriesRules(
        planning_aes=frozenset({"TPS"}), mvct_pattern=re.compile("CTrue", re.IGNORECASE)
    )
    kind, reason = classify(SeriesFacts("TPS", "CTrue Image Set", 120.0), rules)
    assert kind is SeriesKind.PLANNING
    assert "TPS" in reason


def test_a_tomotherapy_mvct_is_recognised_by_its_series_description() -> None:
    kind, _ = classify(SeriesFacts("CONSOLE", "ctrue image set", 300.0), CTRUE)
    assert kind is SeriesKind.MVCT


def test_a_series_no_rule_identifies_is_held_unassigned_however_long_it_is() -> None:
    kind, reason = classify(SeriesFacts("ARCHIVE", "CT THORAX W/O", 380.0), CTRUE)
    assert kind is None
    assert "no rule identified it" in reason and "'ARCHIVE'" in reason and "380 mm" in reason


@pytest.mark.parametrize("unmatched", ["mvct", "ignored"])
def test_the_unmatched_rule_can_name_one_kind_for_every_unmatched_series(unmatched: str) -> None:
    rules = SeriesRules(unmatched="ignore" if unmatched == "ignored" else unmatched)
    kind, _ = classify(SeriesFacts("X", "", 100.0), rules)
    assert kind is not None and kind.value == unmatched


@pytest.mark.parametrize("value", ["longest", "planning"])
def test_an_unmatched_rule_that_would_make_any_series_a_planning_ct_is_refused(
    value: str,
) -> None:
    with pytest.raises(ValidationError, match="never made a planning CT"):
        Settings(dicom_unmatched_series=value)


def test_the_scp_accepts_the_ae_titles_configured_anywhere_and_none_by_default() -> None:
    assert allowed_callers(Settings()) == frozenset()
    settings = Settings(
        dicom_allowed_aes="QA", dicom_mvct_aes="TOMO1", dicom_planning_aes="TPS, TOMO1"
    )
    assert allowed_callers(settings) == frozenset({"QA", "TOMO1", "TPS"})


def test_bad_patterns_and_ae_titles_are_refused_with_the_setting_named() -> None:
    with pytest.raises(DicomError, match="MVCT_GUIDE_DICOM_MVCT_PATTERN"):
        SeriesRules.from_settings(Settings(dicom_mvct_pattern="CTrue ("))
    with pytest.raises(DicomError, match="not a valid AE title"):
        ae_titles("CONSOLE, A-TITLE-LONGER-THAN-16")
    assert ae_titles(" CONSOLE1,TPS ,") == frozenset({"CONSOLE1", "TPS"})
