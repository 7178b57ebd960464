"""NAL, eNAL and SAL per course on hand-worked examples; the NAL warning names its fractions."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from registration.errors import InputError
from registration.stats_offline import OfflineProtocol, ProtocolOutcome, offline_protocols
from registration.stats_records import ShiftRecord
from registration.stats_warnings import WarningKind, early_warnings

DAY = datetime.date(2026, 3, 2)


def course(
    shifts: list[tuple[float, float, float]], numbers: list[int] | None = None, patient: str = "P1"
) -> list[ShiftRecord]:
    numbers = numbers or list(range(1, len(shifts) + 1))
    return [
        ShiftRecord(patient, "C1", n, DAY + datetime.timedelta(days=n), lat, long, vert, 0.0)
        for n, (lat, long, vert) in zip(numbers, shifts, strict=True)
    ]


def by_protocol(
    records: list[ShiftRecord], **kwargs: Any
) -> dict[OfflineProtocol, ProtocolOutcome]:
    return {o.protocol: o for o in offline_protocols(records, **kwargs)}


def test_nal_corrects_the_mean_of_the_first_three_fractions_whatever_its_size() -> None:
    """Hand-worked (mm, lateral/longitudinal/vertical):

    fractions 1–5: (2, 1, 0), (4, −1, 0.5), (3, 3, −0.5), (1, 0, 0), (3, 1, 1).
    NAL (N = 3): correction = mean of fractions 1–3 = (3, 1, 0), applied from fraction 4.
    What is left, x − c: lateral 2, 4, 3, −2, 0 → mean 1.4; longitudinal 1, −1, 3, −1, 0 → 0.4;
    vertical 0, 0.5, −0.5, 0, 1 → 0.2.
    """
    records = course([(2, 1, 0), (4, -1, 0.5), (3, 3, -0.5), (1, 0, 0), (3, 1, 1)])
    nal = offline_protocols(records)[0]
    assert nal.protocol is OfflineProtocol.NAL
    (step,) = nal.corrections
    assert (step.after_fraction, step.based_on_fractions) == (3, (1, 2, 3))
    assert (step.lateral_mm, step.longitudinal_mm, step.vertical_mm) == pytest.approx((3, 1, 0))
    assert nal.residual_mean_mm == pytest.approx((1.4, 0.4, 0.2))
    assert "from fraction 4 on" in nal.message


def test_nal_with_too_few_fractions_prescribes_nothing_and_says_why() -> None:
    nal = offline_protocols(course([(5, 0, 0), (5, 0, 0)]))[0]
    assert nal.corrections == () and nal.total_mm == (0.0, 0.0, 0.0)
    assert "needs 3 imaged fractions; 2 so far" in nal.message


def test_enal_re_estimates_the_correction_from_all_images_when_a_follow_up_is_off() -> None:
    """Hand-worked, lateral only, follow-up every 2 fractions, threshold 2 mm:

    x = 2, 4, 3, 1, 6, 3, 6 (fractions 1–7). NAL: c = 3 after fraction 3.
    Fraction 5 (follow-up): |6 − 3| = 3 > 2 → c = mean(2, 4, 3, 6) = 3.75 (step +0.75).
    Fraction 7 (follow-up): |6 − 3.75| = 2.25 > 2 → c = mean(2, 4, 3, 6, 6) = 4.2 (step +0.45).
    In force per fraction: 0, 0, 0, 3, 3, 3.75, 3.75; x − c = 2, 4, 3, −2, 3, −0.75, 2.25 →
    mean 11.5 / 7 = 1.642857.
    """
    records = course([(v, 0, 0) for v in (2, 4, 3, 1, 6, 3, 6)])
    enal = by_protocol(records, follow_up_every=2, follow_up_threshold_mm=2.0)[OfflineProtocol.ENAL]
    assert [s.after_fraction for s in enal.corrections] == [3, 5, 7]
    assert [s.lateral_mm for s in enal.corrections] == pytest.approx([3.0, 0.75, 0.45])
    assert enal.total_mm[0] == pytest.approx(4.2)
    assert enal.imaged_fractions == (1, 2, 3, 5, 7)
    assert enal.residual_mean_mm[0] == pytest.approx(11.5 / 7)


def test_sal_shrinks_its_action_level_and_stops_at_n_max() -> None:
    """Hand-worked, Bel et al. 1993 with α = 4 mm, N_max = 2, lateral only:

    x = 3, 4, 2, 5, 3, 4 (fractions 1–6).
    i = 1 (fr. 1): |3| ≤ 4/√1 = 4, go on. i = 2 (fr. 2): |mean(3, 4)| = 3.5 > 4/√2 = 2.83 →
    correct by 3.5, restart. i = 1 (fr. 3): |2 − 3.5| = 1.5 ≤ 4. i = 2 (fr. 4): |mean(−1.5, 1.5)|
    = 0 ≤ 2.83 and i = N_max → imaging stops. x − c = 3, 4, −1.5, 1.5, −0.5, 0.5 → mean 7/6.
    """
    records = course([(v, 0, 0) for v in (3, 4, 2, 5, 3, 4)])
    sal = by_protocol(records, sal_alpha_mm=4.0, sal_n_max=2)[OfflineProtocol.SAL]
    (step,) = sal.corrections
    assert (step.after_fraction, step.based_on_fractions) == (2, (1, 2))
    assert step.lateral_mm == pytest.approx(3.5)
    assert sal.imaged_fractions == (1, 2, 3, 4)
    assert sal.residual_mean_mm[0] == pytest.approx(7 / 6)
    assert "imaging stopped" in sal.message


def test_sal_compares_the_3d_length_not_each_axis() -> None:
    """(3, 3, 0) mm: each axis ≤ 4 mm but the length 4.24 mm > 4/√1 → corrected at once."""
    sal = by_protocol(course([(3, 3, 0), (3, 3, 0)]), sal_alpha_mm=4.0, sal_n_max=3)
    (step,) = sal[OfflineProtocol.SAL].corrections
    assert (step.after_fraction, step.lateral_mm, step.longitudinal_mm) == (1, 3.0, 3.0)


def test_sal_needs_both_parameters_and_bad_values_are_named() -> None:
    with pytest.raises(InputError, match="both sal_alpha_mm and sal_n_max"):
        offline_protocols(course([(1, 1, 1)]), sal_alpha_mm=4.0)
    with pytest.raises(InputError, match="nal_fractions=0"):
        offline_protocols(course([(1, 1, 1)]), nal_fractions=0)


def test_the_nal_warning_names_its_fractions_when_fraction_1_has_no_shift() -> None:
    records = course([(3, 0, 0), (3, 0, 0), (3, 0, 0)], numbers=[2, 3, 4])
    (warning,) = early_warnings(records, DAY + datetime.timedelta(days=10))
    assert warning.kind is WarningKind.NAL
    assert warning.fraction_numbers == (2, 3, 4)
    assert "first 3 fractions with a shift (fractions 2, 3, 4; none for fraction 1)" in (
        warning.message
    )
    plain = early_warnings(course([(3, 0, 0)] * 3), DAY + datetime.timedelta(days=10))
    assert "mean of first 3 fractions is" in plain[0].message
    assert plain[0].fraction_numbers == (1, 2, 3)
