"""What a received CT series is: an MVCT, a planning CT, unassigned, or nothing to use (pure).

The order of the rules (first match wins):

1. the sending AE: ``dicom_mvct_aes`` → MVCT, ``dicom_planning_aes`` → planning CT;
2. the Series Description: ``dicom_mvct_pattern`` (default ``CTrue Image Set``, TomoTherapy's
   MVCT export) → MVCT, ``dicom_planning_pattern`` → planning CT (regular expressions, searched,
   case-insensitive);
3. otherwise ``dicom_unmatched_series``: ``unassigned`` (the default) — held for a physicist
   (:mod:`app.dicom.unassigned`), ``mvct``, or ``ignore``. A series is never made a planning CT
   because of what it is not (the former ``longest`` rule made a longer diagnostic CT of the
   same Patient ID a new course).

Who may send at all is :func:`allowed_callers`: the AE titles configured anywhere; when none is
configured, every calling AE is refused.

>>> rules = SeriesRules(mvct_pattern=re.compile("CTrue Image Set", re.IGNORECASE))
>>> classify(SeriesFacts("CONSOLE", "CTrue Image Set", 120.0), rules)[0].value
'mvct'
>>> classify(SeriesFacts("ARCHIVE", "CT THORAX", 380.0), rules)[0] is None  # unassigned
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.config import Settings
from app.db.models_dicom import SeriesKind
from app.dicom import DicomError


@dataclass(frozen=True)
class SeriesRules:
    mvct_aes: frozenset[str] = frozenset()
    planning_aes: frozenset[str] = frozenset()
    mvct_pattern: re.Pattern[str] | None = None
    planning_pattern: re.Pattern[str] | None = None
    unmatched: str = "unassigned"  #: "unassigned", "mvct" or "ignore"

    @classmethod
    def from_settings(cls, settings: Settings) -> SeriesRules:
        return cls(
            mvct_aes=ae_titles(settings.dicom_mvct_aes),
            planning_aes=ae_titles(settings.dicom_planning_aes),
            mvct_pattern=_pattern("MVCT_GUIDE_DICOM_MVCT_PATTERN", settings.dicom_mvct_pattern),
            planning_pattern=_pattern(
                "MVCT_GUIDE_DICOM_PLANNING_PATTERN", settings.dicom_planning_pattern
            ),
            unmatched=settings.dicom_unmatched_series,
        )


def allowed_callers(settings: Settings) -> frozenset[str]:
    """The calling AE titles the SCP accepts: every one configured, in any of the three lists."""
    return (
        ae_titles(settings.dicom_allowed_aes)
        | ae_titles(settings.dicom_mvct_aes)
        | ae_titles(settings.dicom_planning_aes)
    )


def ae_titles(text: str) -> frozenset[str]:
    """``"CONSOLE1, TPS"`` → the AE titles, trimmed (AE titles are at most 16 characters)."""
    titles = frozenset(t.strip() for t in text.split(",") if t.strip())
    for title in titles:
        if len(title) > 16 or not title.isascii() or "\\" in title:
            raise DicomError(f"{title!r} is not a valid AE title (1-16 ASCII characters, no '\\')")
    return titles


def _pattern(name: str, text: str) -> re.Pattern[str] | None:
    if not text:
        return None
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise DicomError(f"{name} {text!r} is not a regular expression: {exc}") from None


@dataclass(frozen=True)
class SeriesFacts:
    """What the rules look at."""

    sender: str
    series_description: str
    extent_mm: float  #: z extent of the slice positions received (shown to the physicist)


def classify_by_rules(facts: SeriesFacts, rules: SeriesRules) -> tuple[SeriesKind, str] | None:
    """Kind and reason from the AE lists and the description patterns; None if none applies."""
    if facts.sender in rules.mvct_aes:
        return SeriesKind.MVCT, f"sent by {facts.sender} (MVCT sender)"
    if facts.sender in rules.planning_aes:
        return SeriesKind.PLANNING, f"sent by {facts.sender} (planning CT sender)"
    description = facts.series_description
    if rules.mvct_pattern is not None and rules.mvct_pattern.search(description):
        return SeriesKind.MVCT, f"series description matches {rules.mvct_pattern.pattern!r}"
    if rules.planning_pattern is not None and rules.planning_pattern.search(description):
        return SeriesKind.PLANNING, (
            f"series description matches {rules.planning_pattern.pattern!r}"
        )
    return None


def classify(facts: SeriesFacts, rules: SeriesRules) -> tuple[SeriesKind | None, str]:
    """Kind and reason; kind None: no rule identified the series, hold it as unassigned."""
    decided = classify_by_rules(facts, rules)
    if decided is not None:
        return decided
    if rules.unmatched == "mvct":
        return SeriesKind.MVCT, "no rule matched; unmatched series are MVCTs"
    if rules.unmatched == "ignore":
        return SeriesKind.IGNORED, "no rule matched; unmatched series are ignored"
    return None, (
        f"no rule identified it as a planning CT or an MVCT (sender {facts.sender!r}, series "
        f"description {facts.series_description!r}, {facts.extent_mm:.0f} mm long)"
    )
