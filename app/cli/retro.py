"""``mvct-guide retro ARCHIVE --out results.csv``: re-register an archive of courses.

Every MVCT of every course (planning CT + MVCTs of one patient and Frame of Reference; which CT
is the planning CT follows the rule in :mod:`app.cli.archive`) is registered again, ITK loaded
once and each planning CT prepared once, and one CSV row is written per MVCT: who, which series,
the 6-DOF correction and the correction for ``--dof``, trusted, the reasons. A course that cannot
be registered still gets one row per MVCT, with the reason in ``error``.

Exit status: 0 when the CSV was written (whatever the rows say), 2 when the archive cannot be
read or holds no MVCT (nothing is written then).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from app.cli.archive import DEFAULT_MVCT_PATTERN, ArchiveSeries, Course

AXES = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")
CSV_COLUMNS = (
    "patient_id",
    "frame_of_reference_uid",
    "planning_series_uid",
    "planning_choice",
    "mvct_series_uid",
    "mvct_series_description",
    "mvct_series_date_time",
    "isocenter_lps_mm",
    "isocenter_source",
    *(f"{axis}_6dof" for axis in AXES),
    "dof",
    *AXES,
    "trusted",
    "reasons",
    "error",
)


def add_commands(sub: Any) -> None:
    retro = sub.add_parser(
        "retro",
        help="re-register an archive of courses and write one CSV row per MVCT",
        description="Group the CT series of an archive (folder or .zip) by patient and Frame of "
        "Reference, pick each course's planning CT (MVCTs are the series whose description "
        "matches --mvct-pattern; of the others the one matching --planning-pattern, else the "
        "only one, else the longest, said in planning_choice), register every MVCT again and "
        "write the couch corrections to a CSV.",
    )
    retro.add_argument("archive", type=Path, help="folder (searched recursively) or .zip")
    retro.add_argument("--out", required=True, type=Path, help="the CSV to write")
    retro.add_argument("--dof", type=int, choices=[6, 4, 3], default=6)
    retro.add_argument("--mode", choices=["bone", "tissue", "full"], default="tissue")
    retro.add_argument(
        "--mvct-pattern",
        default=DEFAULT_MVCT_PATTERN,
        help="regular expression on SeriesDescription marking an MVCT "
        f"(default {DEFAULT_MVCT_PATTERN!r})",
    )
    retro.add_argument(
        "--planning-pattern", help="regular expression on SeriesDescription marking the planning CT"
    )
    retro.add_argument("--verbose", action="store_true", help="progress lines on stderr")
    retro.set_defaults(handler=run_retro)


def run_retro(args: argparse.Namespace) -> int:
    from app.cli.archive import scan_archive
    from app.cli.batch import load_engine
    from app.cli.progress import Registered, progress_for
    from registration.elastix_run import itk_load_count
    from registration.errors import RegistrationError

    try:
        if not args.archive.exists():
            raise ValueError(f"archive not found: {args.archive}")
        scan = scan_archive(args.archive, args.mvct_pattern, args.planning_pattern)
    except (RegistrationError, ValueError, OSError) as exc:
        print(f"mvct-guide retro: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    total = sum(len(c.mvcts) for c in scan.courses)
    if total == 0:
        print(
            f"mvct-guide retro: no MVCT (CT series whose description matches "
            f"{args.mvct_pattern!r}) in {args.archive}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if scan.skipped_files:
        print(
            f"mvct-guide retro: skipped {len(scan.skipped_files)} files that are neither CT "
            f"images nor RT Plans (e.g. {scan.skipped_files[0]})",
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (
        progress_for(args.verbose, "mvct-guide retro") as progress,
        args.out.open("w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        load_engine(progress)
        done = 0
        for course in scan.courses:
            started, loads = time.perf_counter(), itk_load_count()
            for row, label, status in _course_rows(args, course, progress):
                done += 1
                writer.writerow(row)
                handle.flush()
                progress.registered(
                    Registered(
                        index=done,
                        total=total,
                        label=label,
                        seconds=time.perf_counter() - started,
                        itk_loaded_here=itk_load_count() > loads,
                        status=status,
                    )
                )
                started, loads = time.perf_counter(), itk_load_count()
    return EXIT_OK


def _course_rows(
    args: argparse.Namespace, course: Course, progress: Any
) -> Iterator[tuple[list[str], str, str]]:
    from registration.couch import Dof
    from registration.errors import RegistrationError
    from registration.geometry import LpsPoint
    from registration.result import Mode, RegistrationOptions
    from registration.rigid import prepare_planning, register

    prepared = None
    error = course.refusal
    if course.planning is not None and not error:
        try:
            with progress.step(f"preparing the planning CT of {course.patient_id or '(no ID)'}"):
                prepared = prepare_planning(_read(args.archive, course.planning))
                _ = prepared.itk_levels
        except (RegistrationError, ValueError, OSError) as exc:
            error = f"planning CT: {exc}"
    iso = course.isocenter_lps_mm
    options = RegistrationOptions(
        isocenter=None if iso is None else LpsPoint(*iso), dof=Dof(args.dof), mode=Mode(args.mode)
    )
    for mvct in course.mvcts:
        label = f"{course.patient_id} {mvct.series_instance_uid}"
        if prepared is None:
            yield _row(course, mvct, None, error), label, f"not registered: {error}"
            continue
        try:
            result = register(prepared, _read(args.archive, mvct), options)
        except (RegistrationError, ValueError, OSError) as exc:
            yield _row(course, mvct, None, str(exc)), label, f"not registered: {exc}"
            continue
        status = "trusted" if result.trusted else "NOT trusted"
        yield _row(course, mvct, result, ""), label, status


def _read(archive: Path, series: ArchiveSeries) -> Any:
    from registration.dicom_series import read_ct_series

    if archive.is_dir():
        return read_ct_series(list(series.files))
    return read_ct_series(archive, series.series_instance_uid)  # a .zip: members by series


def _row(course: Course, mvct: ArchiveSeries, result: Any, error: str) -> list[str]:
    head = [
        course.patient_id,
        course.frame_of_reference_uid,
        "" if course.planning is None else course.planning.series_instance_uid,
        course.planning_choice,
        mvct.series_instance_uid,
        mvct.description,
        mvct.date_time,
    ]
    if result is None:
        iso = course.isocenter_lps_mm
        where = "" if iso is None else " ".join(f"{v:.2f}" for v in iso)
        blanks = [""] * (2 * len(AXES) + 1)
        return [*head, where, course.isocenter_source, *blanks, "", "", error]
    full = result.couch_correction_6dof.rounded().as_dict()
    dof = result.couch_correction.rounded().as_dict()
    p = result.isocenter_lps_mm
    return [
        *head,
        f"{p.x_mm:.2f} {p.y_mm:.2f} {p.z_mm:.2f}",
        course.isocenter_source,
        *(f"{full[axis]:.2f}" for axis in AXES),
        str(int(result.dof)),
        *(f"{dof[axis]:.2f}" for axis in AXES),
        "yes" if result.trusted else "no",
        " | ".join(result.warnings),
        error,
    ]
