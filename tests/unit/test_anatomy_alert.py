"""Tests of the anatomy-change alert rule (pure: synthetic AnatomyFigures, no images)."""

from __future__ import annotations

import pytest

from registration.anatomy import AnatomyFigures, SliceFigures
from registration.anatomy_alert import (
    AnatomyAlertReason,
    AnatomyAlertSettings,
    evaluate_anatomy_alert,
)
from registration.errors import InputError


def figures(surface_mm: float = 0.0, area_percent: float = 0.0, misfit: float | None = 0.01):
    planning_area = 10_000.0
    one = SliceFigures(
        0.0,
        surface_mm,
        max(0.0, -surface_mm),
        max(0.0, surface_mm),
        planning_area,
        planning_area * (1 + area_percent / 100),
    )
    return AnatomyFigures(
        (one,),
        surface_mm,
        one.max_inward_mm,
        one.max_outward_mm,
        area_percent,
        misfit,
        "sphere",
        "threshold",
    )


def test_a_mean_inward_change_of_5_mm_alerts_and_4_9_mm_does_not() -> None:
    assert evaluate_anatomy_alert([figures(-5.0)]).reasons == (AnatomyAlertReason.SURFACE,)
    assert not evaluate_anatomy_alert([figures(-4.9)]).alert


def test_an_outward_change_alerts_too_and_the_message_says_outward() -> None:
    verdict = evaluate_anatomy_alert([figures(6.0)])
    assert verdict.alert and "outward" in verdict.messages[0]


def test_an_area_change_of_10_percent_alerts_either_way() -> None:
    assert evaluate_anatomy_alert([figures(area_percent=-10.0)]).reasons == (
        AnatomyAlertReason.AREA,
    )
    assert evaluate_anatomy_alert([figures(area_percent=10.5)]).alert
    assert not evaluate_anatomy_alert([figures(area_percent=-9.0)]).alert


def test_the_misfit_is_judged_against_the_first_three_fractions_only_after_them() -> None:
    baseline = [figures(misfit=m) for m in (0.010, 0.012, 0.011)]
    early = evaluate_anatomy_alert([*baseline[:2], figures(misfit=0.5)])
    assert early.misfit_baseline is None and not early.alert
    later = evaluate_anatomy_alert([*baseline, figures(misfit=0.011), figures(misfit=0.040)])
    assert later.misfit_baseline == pytest.approx(0.011)
    assert later.misfit_increase == pytest.approx(0.029)
    assert later.reasons == (AnatomyAlertReason.MISFIT,)
    assert not evaluate_anatomy_alert([*baseline, figures(misfit=0.030)]).alert


def test_a_steady_inward_drift_over_five_fractions_alerts_before_the_5_mm_level() -> None:
    drift = [figures(s) for s in (0.0, -0.8, -1.6, -2.4, -3.2)]
    verdict = evaluate_anatomy_alert(drift)
    assert verdict.reasons == (AnatomyAlertReason.TREND,)
    assert verdict.trend_change_mm == pytest.approx(-3.2)


def test_an_unsteady_series_with_the_same_overall_change_does_not_trend() -> None:
    zigzag = [figures(s) for s in (0.0, -2.5, -0.5, -3.0, -3.2)]
    verdict = evaluate_anatomy_alert(zigzag)
    assert not verdict.alert
    assert verdict.trend_change_mm is not None


def test_fewer_than_five_fractions_give_no_trend() -> None:
    verdict = evaluate_anatomy_alert([figures(s) for s in (0.0, -1.5, -3.0, -4.5)])
    assert verdict.trend_change_mm is None and not verdict.alert


def test_course_settings_change_the_levels() -> None:
    strict = AnatomyAlertSettings(surface_change_mm=2.0)
    assert evaluate_anatomy_alert([figures(-2.5)], strict).alert
    assert strict.to_dict()["surface_change_mm"] == 2.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("surface_change_mm", 0.0),
        ("area_change_percent", float("nan")),
        ("baseline_fractions", 0),
        ("trend_fractions", 2),
    ],
)
def test_impossible_settings_are_refused_naming_the_setting(field: str, value: float) -> None:
    with pytest.raises(InputError, match=field):
        AnatomyAlertSettings(**{field: value})  # type: ignore[arg-type]


def test_an_empty_course_is_refused() -> None:
    with pytest.raises(InputError):
        evaluate_anatomy_alert([])


def test_the_verdict_is_plain_json() -> None:
    verdict = evaluate_anatomy_alert([figures(-6.0, -12.0)])
    data = verdict.to_dict()
    assert data["alert"] is True and data["reasons"] == ["surface", "area"]
