"""From the database to a :class:`~app.services.reports.Report`: which fractions, which shift,
which margin.

The one module of :mod:`app.services.reports` that reads the database; the API route and the CLI
share it
(with :mod:`app.services.reports.export` for the period parameters, file names and formats).

Selection
---------
* **Period**: a fraction belongs to the day (UTC) its MVCT was received (``fractions.created_at``);
  ``week``, ``from``/``to`` and ``since`` are whole UTC days, both ends included.
* **Site**: the course's ``site``, matched exactly (empty: all sites). A site no course has gives
  a valid empty report whose notes list the sites that exist.
* **Fractions without a registration result** (queued, running or failed) have no shift in any
  source: they are not listed, and a note says how many there were.
* **Shift source** (:class:`~registration.stats.ShiftSource`):

  - ``registration``: the couch correction the registration proposed (``registration_results``);
  - ``signed`` (default): the correction of the fraction's latest sign-off
    (:func:`app.db.signoff_repo.signed_correction`). A fraction without a sign-off is listed as
    ``awaiting`` with empty shift values and left out of the statistics — no value is made up,
    and a note gives the number;
  - ``residual``: the error left after the correction (part (b) of
    :mod:`registration.stats_parts`): the verification scan's 6-DOF correction when the
    fraction has one, else what the machine could not correct minus the physician's adjustment;
    a fraction awaiting its sign-off has none yet.

  Under every source the decision, signer and signing time shown are those of the latest
  sign-off, and a **rejected** fraction is listed but not counted (its shift was not applied).
* **Margin**: :func:`registration.stats.summarise` takes one margin for the whole report. It is
  the ``margin_mm`` asked for, else the PTV margin the listed courses share, else the service
  default (3 mm); a note names the courses' margins whenever they differ from the one used.
* **Early warnings** read each listed course's fractions before the period too (``history`` of
  :func:`app.services.reports.build_report`), so a one-week report still checks a course's first
  fractions.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, contains_eager, lazyload

from app.db import repository as repo
from app.db import signoff_repo
from app.db.models import Course, Fraction, RegistrationResult
from app.db.models_signoff import Signoff
from app.services.anatomy import ALERT_WARNING, course_anatomy
from app.services.reports import (
    FractionRow,
    Report,
    ReportContext,
    ReportPeriod,
    build_report,
)
from app.services.reports.residuals import StructureResidualRow
from app.services.reports.shifts_db import fraction_shifts
from registration.couch import CouchCorrection
from registration.stats import DEFAULT_BOOTSTRAP_RESAMPLES, ShiftSource


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What a physicist asked for; ``margin_mm`` None: see the module docstring."""

    period: ReportPeriod
    site: str | None = None
    source: ShiftSource = ShiftSource.SIGNED
    margin_mm: float | None = None
    sal_alpha_mm: float | None = None  #: SAL's α (mm), with ``sal_n_max``; None: no SAL
    sal_n_max: int | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    """The rows of a request, with what the notes must say about them."""

    rows: tuple[FractionRow, ...]
    history: tuple[FractionRow, ...]  #: earlier fractions of the listed courses (warnings only)
    margins_mm: dict[str, float]  #: PTV margin of each listed course (by course id)
    n_without_result: int  #: fractions of the period not listed: no registration result
    known_sites: tuple[str, ...]  #: every site of the courses table (when the site matched none)
    n_without_measured: int = 0  #: listed results that do not read back as a registration
    #: one sentence per patient with an anatomy-change alert on a fraction of the period
    anatomy_flags: tuple[str, ...] = ()


def _day_bounds(period: ReportPeriod) -> tuple[datetime.datetime, datetime.datetime]:
    first = datetime.datetime.combine(period.start, datetime.time.min, datetime.UTC)
    last = datetime.datetime.combine(period.end, datetime.time.max, datetime.UTC)
    return first, last


def _fractions(
    session: Session, conditions: Sequence[ColumnElement[bool]]
) -> list[tuple[Fraction, RegistrationResult | None]]:
    query = (
        select(Fraction, RegistrationResult)
        .join(Course, Fraction.course_id == Course.id)
        .outerjoin(RegistrationResult, RegistrationResult.fraction_id == Fraction.id)
        .options(
            contains_eager(Fraction.course).lazyload(Course.planning_series),
            lazyload(Fraction.mvct_series),
            lazyload(Fraction.job),
            lazyload(Fraction.result),
        )
        .where(*conditions, Fraction.verifies_fraction_id.is_(None))
        .order_by(Fraction.id)
    )
    return [(fraction, result) for fraction, result in session.execute(query)]


def _row(
    fraction: Fraction,
    result: RegistrationResult,
    signoff: Signoff | None,
    source: ShiftSource,
    verification: Fraction | None,
) -> FractionRow:
    shifts = fraction_shifts(fraction, result, signoff, verification)
    shift: RegistrationResult | CouchCorrection | None
    if source is ShiftSource.REGISTRATION:
        shift = result
    elif source is ShiftSource.RESIDUAL:
        residual = None if shifts is None else shifts.residual()
        shift = None if residual is None else residual[0]
    else:
        shift = None if signoff is None else signoff_repo.signed_correction(signoff)
    received = fraction.created_at.astimezone(datetime.UTC)
    return FractionRow(
        patient_id=fraction.patient_id,
        course_id=str(fraction.course_id),
        site=fraction.course.site or None,
        fraction_number=fraction.fraction_number,
        fraction_date=received.date(),
        acquired_at=received,
        lateral_mm=None if shift is None else float(shift.lateral_mm),
        longitudinal_mm=None if shift is None else float(shift.longitudinal_mm),
        vertical_mm=None if shift is None else float(shift.vertical_mm),
        pitch_deg=None if shift is None else float(shift.pitch_deg),
        roll_deg=None if shift is None else float(shift.roll_deg),
        yaw_deg=None if shift is None else float(shift.yaw_deg),
        trusted=result.trusted,
        decision=None if signoff is None else signoff.decision,
        signed_by=None if signoff is None else signoff.printed_name,
        signed_at=None if signoff is None else signoff.signed_at,
        shifts=shifts,
        residuals=tuple(
            StructureResidualRow(
                str(r["structure"]), str(r["type"]), float(r["max_mm"]), float(r["p95_mm"])
            )
            for r in result.residuals or ()
        ),
    )


def _rows(
    session: Session,
    found: Sequence[tuple[Fraction, RegistrationResult | None]],
    source: ShiftSource,
) -> list[FractionRow]:
    registered = [(f, r) for f, r in found if r is not None]
    ids = [f.id for f, _ in registered]
    signoffs = signoff_repo.latest_signoffs(session, ids)
    scans = repo.verifications_of(session, ids)
    return [_row(f, r, signoffs.get(f.id), source, scans.get(f.id)) for f, r in registered]


def _mark_repeat_images(
    history: Sequence[FractionRow], rows: Sequence[FractionRow]
) -> tuple[list[FractionRow], list[FractionRow]]:
    """Mark every image of a (course, fraction number) after the first one that counts.

    A fraction number imaged twice is a repeat (after a rejection, or after the patient moved)
    or a verification image after the correction; the first image that counts is the set-up
    error of that fraction, later ones are listed but not counted.
    """
    counted: set[tuple[str, int]] = set()
    marked: dict[int, FractionRow] = {}
    everything = [*history, *rows]
    for index in sorted(range(len(everything)), key=lambda i: everything[i].acquired_at):
        row = everything[index]
        key = (row.course_id, row.fraction_number)
        if row.counts_in_statistics:
            if key in counted:
                row = dataclasses.replace(row, repeat_image=True)
            counted.add(key)
        marked[index] = row
    result = [marked[i] for i in range(len(everything))]
    return result[: len(history)], result[len(history) :]


def select_rows(session: Session, request: ReportRequest) -> Selection:
    """The period's fractions (and the listed courses' earlier ones) as report rows."""
    first, last = _day_bounds(request.period)
    conditions = [Fraction.created_at >= first, Fraction.created_at <= last]
    if request.site is not None:
        conditions.append(Course.site == request.site)
    found = _fractions(session, conditions)
    rows = _rows(session, found, request.source)
    margins = {str(f.course_id): f.course.ptv_margin_mm for f, r in found if r is not None}
    history: list[FractionRow] = []
    if margins:
        course_ids = sorted(int(course_id) for course_id in margins)
        before = [Fraction.course_id.in_(course_ids), Fraction.created_at < first]
        history = _rows(session, _fractions(session, before), request.source)
    history, rows = _mark_repeat_images(history, rows)
    known_sites: tuple[str, ...] = ()
    if request.site is not None and not found:
        known_sites = tuple(session.scalars(select(Course.site).distinct().order_by(Course.site)))
    return Selection(
        rows=tuple(rows),
        history=tuple(history),
        margins_mm=margins,
        n_without_result=sum(1 for _, r in found if r is None),
        known_sites=known_sites,
        n_without_measured=sum(1 for row in rows if row.shifts is None),
        anatomy_flags=tuple(_anatomy_flags(session, [f for f, _ in found])),
    )


def _anatomy_flags(session: Session, fractions: Sequence[Fraction]) -> list[str]:
    """The patients flagged "anatomy changed: consider re-planning" in the period, per course:
    the latest flagged fraction of the period, why, and whether a physician acknowledged it."""
    in_period = {f.id for f in fractions}
    flags = []
    for course_id in sorted({f.course_id for f in fractions}):
        flagged = [
            e
            for e in course_anatomy(session, course_id)
            if e.fraction_id in in_period and e.alert.alert
        ]
        if not flagged:
            continue
        last = flagged[-1]
        patient = next(f.patient_id for f in fractions if f.id == last.fraction_id)
        numbers = ", ".join(str(e.fraction_number) for e in flagged)
        ack = (
            f"acknowledged by {last.acknowledged.printed_name}: {last.acknowledged.note}"
            if last.acknowledged is not None
            else "not acknowledged"
        )
        flags.append(
            f"{ALERT_WARNING} — patient {patient}, course {course_id}, fraction(s) {numbers}: "
            f"{'; '.join(last.alert.messages)} ({ack})."
        )
    return flags


def _margin_in_use(request: ReportRequest, selection: Selection, default_mm: float) -> float:
    if request.margin_mm is not None:
        return request.margin_mm
    shared = set(selection.margins_mm.values())
    return shared.pop() if len(shared) == 1 else default_mm


def _notes(request: ReportRequest, selection: Selection, margin_mm: float) -> list[str]:
    notes = []
    if selection.n_without_measured:
        notes.append(
            f"{selection.n_without_measured} listed fraction(s) have a stored result without "
            "the measured motion and are left out of the three-part statistics."
        )
    if selection.n_without_result:
        notes.append(
            f"{selection.n_without_result} fraction(s) of the period have no registration result "
            "(queued, running or failed) and are not listed."
        )
    if request.site is not None and not selection.rows and not selection.n_without_result:
        sites = ", ".join(repr(s) for s in selection.known_sites if s) or "none"
        notes.append(
            f"No course of site {request.site!r} has fractions in this period; the sites of the "
            f"courses are: {sites}."
        )
    notes.extend(selection.anatomy_flags)
    by_margin = Counter(selection.margins_mm.values())
    if set(by_margin) - {margin_mm}:
        listed = ", ".join(
            f"{value:g} mm ({n} course{'s' if n > 1 else ''})"
            for value, n in sorted(by_margin.items())
        )
        notes.append(
            f"The listed courses use PTV margins of {listed}. The statistics take one margin, so "
            f"'beyond margin' counts and verdicts use {margin_mm:g} mm (margin_mm) for all."
        )
    return notes


def build(
    request: ReportRequest,
    selection: Selection,
    *,
    generated_at: datetime.datetime,
    generated_by: str,
    default_margin_mm: float,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
) -> Report:
    """Choose the margin, write the notes and build the report of ``selection``."""
    margin_mm = _margin_in_use(request, selection, default_margin_mm)
    context = ReportContext(
        period=request.period,
        generated_at=generated_at,
        generated_by=generated_by,
        site=request.site,
        shift_source=request.source,
        margin_in_use_mm=margin_mm,
        notes=tuple(_notes(request, selection, margin_mm)),
        sal_alpha_mm=request.sal_alpha_mm,
        sal_n_max=request.sal_n_max,
    )
    return build_report(
        selection.rows,
        context,
        history=selection.history,
        bootstrap_resamples=bootstrap_resamples,
    )


def make_report(
    session: Session,
    request: ReportRequest,
    *,
    generated_at: datetime.datetime,
    generated_by: str,
    default_margin_mm: float,
    bootstrap_resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
) -> Report:
    """:func:`select_rows` then :func:`build` (:class:`ReportInputError` if unusable)."""
    return build(
        request,
        select_rows(session, request),
        generated_at=generated_at,
        generated_by=generated_by,
        default_margin_mm=default_margin_mm,
        bootstrap_resamples=bootstrap_resamples,
    )
