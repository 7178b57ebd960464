"""``mvct-guide register`` and ``mvct-guide simulate``: the core from the command line.

Exit status: 0 success, 2 bad input (message on stderr, no traceback), 3 result not trusted
(the result is still printed). With several MVCTs (``--mvct`` repeated, a folder of MVCT
series, a CSV of fractions; see :mod:`app.cli.batch`) every MVCT is registered in the one
process (ITK loaded once, the planning CT prepared once) and the exit status is the worst of
the per-MVCT statuses, ordered 0 < 3 < 2. ``--rtstruct``/``--rtplan`` (:mod:`app.cli.package`)
are read once and judge every MVCT: the plan's isocentre, residuals per structure, warnings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from app.cli import EXIT_BAD_INPUT, EXIT_OK


def add_commands(sub: Any) -> None:
    reg = sub.add_parser(
        "register",
        help="register today's MVCT to the planning CT and print the couch correction",
        description="Register a daily MVCT to the planning CT (rigid, 6 DOF, mutual information) "
        "and print the couch correction in IEC 61217 table axes.",
    )
    reg.add_argument(
        "--planning",
        required=True,
        type=Path,
        help="planning CT: folder, .zip, "
        "DICOM file, or .mha/.nrrd/.nii(.gz) with --patient-position",
    )
    reg.add_argument(
        "--mvct",
        required=True,
        type=Path,
        action="append",
        help="daily MVCT, same forms; repeat it, or give a folder/.zip of several MVCT series "
        "or a .csv of fractions (column 'mvct', optional 'mvct_series') to register many",
    )
    reg.add_argument("--planning-series", metavar="UID", help="SeriesInstanceUID to use")
    reg.add_argument("--mvct-series", metavar="UID", help="SeriesInstanceUID to use")
    reg.add_argument(
        "--patient-position",
        choices=["HFS", "HFP", "FFS", "FFP"],
        help="required for research formats (MHA/NRRD/NIfTI)",
    )
    reg.add_argument(
        "--isocenter",
        metavar="X,Y,Z",
        help="plan isocentre, mm DICOM LPS (default: centre of the MVCT, stated in the warnings)",
    )
    reg.add_argument(
        "--dof",
        type=int,
        choices=[6, 4, 3],
        default=6,
        help="what the couch corrects: 6, 4 (translations + roll) or 3",
    )
    reg.add_argument("--mode", choices=["bone", "tissue", "full"], default="tissue")
    reg.add_argument(
        "--roi-radius-mm", type=float, help="match only within this radius of the isocentre"
    )
    reg.add_argument(
        "--rtstruct",
        type=Path,
        help="the RT Structure Set drawn on the planning CT: residuals per structure",
    )
    reg.add_argument(
        "--rtplan", type=Path, help="the RT Plan: its isocentre is used unless --isocenter"
    )
    reg.add_argument(
        "--match-structure",
        metavar="NAME",
        help="register on this structure of --rtstruct (a ROI name, or PTV: every PTV-type ROI) "
        "plus --match-margin-mm, in the planning frame",
    )
    reg.add_argument(
        "--match-margin-mm",
        type=float,
        default=15.0,
        help="margin around --match-structure, mm (default 15)",
    )
    reg.add_argument(
        "--ptv-margin-mm",
        type=float,
        default=3.0,
        help="CTV→PTV margin: a PTV residual of half of it or more is a warning (default 3)",
    )
    reg.add_argument(
        "--prv-margin-mm",
        type=float,
        default=3.0,
        help="serial organs at risk (cord, brainstem, optic, chiasm): their margin (default 3)",
    )
    reg.add_argument(
        "--json", action="store_true", help="print one JSON object per MVCT, one per line"
    )
    reg.add_argument(
        "--verbose",
        action="store_true",
        help="progress lines on stderr even when it is not a terminal",
    )
    reg.set_defaults(handler=run_register)

    sim = sub.add_parser(
        "simulate",
        help="QA: write a simulated MVCT of a planning CT with a known motion",
        description="Write a simulated MVCT series (DICOM) of a planning CT whose anatomy is "
        "moved by a known amount, and the couch correction that a registration should find.",
    )
    sim.add_argument("--planning", required=True, type=Path)
    sim.add_argument("--out", required=True, type=Path, help="new folder for the MVCT series")
    sim.add_argument("--patient-position", choices=["HFS", "HFP", "FFS", "FFP"])
    sim.add_argument("--isocenter", metavar="X,Y,Z", help="mm LPS (default: planning centre)")
    sim.add_argument(
        "--move-iec-mm",
        metavar="LAT,LONG,VERT",
        default="0,0,0",
        help="anatomy displacement in IEC table axes, mm",
    )
    sim.add_argument(
        "--rotate-iec-deg",
        metavar="PITCH,ROLL,YAW",
        default="0,0,0",
        help="anatomy rotation about the isocentre in IEC table axes, degrees",
    )
    sim.add_argument("--slice-mm", type=float, default=4.0, help="2, 4 or 6 on TomoTherapy")
    sim.add_argument("--length-mm", type=float, default=120.0)
    sim.add_argument("--pixel-mm", type=float, default=0.78125, help="0.78125 = 512 over 40 cm")
    sim.add_argument("--noise-hu", type=float, default=40.0)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--patient-id", help="default: the planning CT's")
    sim.set_defaults(handler=run_simulate)


def run_register(args: argparse.Namespace) -> int:
    from app.cli.batch import load_engine, register_sources, worst_status
    from app.cli.progress import progress_for
    from app.jobs.residuals import residual_table
    from registration.errors import RegistrationError
    from registration.rigid import prepare_planning

    try:
        options, planning, sources, package = _inputs(args)
    except (RegistrationError, ValueError, OSError) as exc:
        print(f"mvct-guide register: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    statuses = []
    with progress_for(args.verbose) as progress:
        load_engine(progress)
        with progress.step("preparing the planning CT (once)"):
            prepared = prepare_planning(planning)
            _ = prepared.itk_levels
        outcomes = register_sources(
            prepared,
            sources,
            options,
            progress,
            read=lambda s: _read(s.path, args.patient_position, s.series_uid),
            judge=package.judge,
        )
        for outcome in outcomes:
            statuses.append(outcome.exit_status)
            if args.json:
                print(json.dumps(outcome.to_dict()), flush=True)
            elif outcome.result is None:
                print(
                    f"mvct-guide register: {outcome.source.label}: {outcome.error}", file=sys.stderr
                )
            else:
                if len(sources) > 1:
                    print(f"== MVCT {len(statuses)}/{len(sources)}: {outcome.source.label}")
                table = residual_table(list(outcome.residuals or ()))
                print("\n".join([format_result(outcome.result), *table]), flush=True)
    return worst_status(statuses)


def _inputs(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Options, the planning CT (read), the MVCT sources (not read yet) and the planning
    package (read once, judges every MVCT); raise on bad input."""
    from app.cli.batch import expand_mvct_sources
    from app.cli.package import read_package
    from registration.couch import Dof
    from registration.geometry import LpsPoint
    from registration.result import Mode, RegistrationOptions, SphereRoi

    _require_exists(args.planning, "planning CT")
    for mvct in args.mvct:
        _require_exists(mvct, "MVCT")
    if args.isocenter:
        LpsPoint.parse(args.isocenter)  # a malformed value is refused before anything is read
    planning = _read(args.planning, args.patient_position, args.planning_series)
    package = read_package(args, planning)
    roi = None
    if args.roi_radius_mm is not None:
        if package.isocenter is None:
            raise ValueError(
                "--roi-radius-mm needs --isocenter or --rtplan (the sphere is centred on it)"
            )
        if args.roi_radius_mm <= 0:
            raise ValueError(f"--roi-radius-mm must be positive, not {args.roi_radius_mm}")
        roi = SphereRoi(package.isocenter, args.roi_radius_mm)
    region = package.planning_region(args, planning.image)
    sources = expand_mvct_sources(
        args.mvct, args.mvct_series, skip_series=planning.series_instance_uid
    )
    if not sources:
        raise ValueError(f"no CT series found in {', '.join(map(str, args.mvct))}")
    options = RegistrationOptions(
        isocenter=package.isocenter,
        dof=Dof(args.dof),
        mode=Mode(args.mode),
        roi=roi,
        planning_region=region,
    )
    return options, planning, sources, package


def _read(path: Path, patient_position: str | None, series_uid: str | None) -> Any:
    from registration.dicom_series import read_volume

    return read_volume(path, patient_position, series_uid)


def format_result(result: Any) -> str:
    """The readable table: what the couch should do, then the details."""
    c = result.couch_correction
    full = result.couch_correction_6dof
    q = result.quality
    iso = result.isocenter_lps_mm
    lines = [
        f"Couch correction (IEC 61217 table axes, {result.patient_position.value}, "
        f"{int(result.dof)} DOF, mode {result.mode.value}):",
        f"  lateral       {c.lateral_mm:+8.2f} mm     (6-DOF {full.lateral_mm:+8.2f})",
        f"  longitudinal  {c.longitudinal_mm:+8.2f} mm     (6-DOF {full.longitudinal_mm:+8.2f})",
        f"  vertical      {c.vertical_mm:+8.2f} mm     (6-DOF {full.vertical_mm:+8.2f})",
        f"  pitch         {c.pitch_deg:+8.2f} deg    (6-DOF {full.pitch_deg:+8.2f})",
        f"  roll          {c.roll_deg:+8.2f} deg    (6-DOF {full.roll_deg:+8.2f})",
        f"  yaw           {c.yaw_deg:+8.2f} deg    (6-DOF {full.yaw_deg:+8.2f})",
        f"Isocentre (LPS mm): {iso.x_mm:.1f}, {iso.y_mm:.1f}, {iso.z_mm:.1f}",
        f"Quality: MI {q.final_metric:.3f}, overlap {q.overlap_fraction:.0%}, "
        f"{q.iterations} iterations, {q.seconds:.2f} s"
        + (
            f", second estimate within {q.second_estimate_disagreement_mm:.2f} mm"
            if q.second_estimate_disagreement_mm is not None
            else ""
        ),
        "Trusted: yes"
        if result.trusted
        else "Trusted: NO - check the fusion by eye before treating",
    ]
    lines += [f"Warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def run_simulate(args: argparse.Namespace) -> int:
    from registration.errors import RegistrationError

    try:
        text = _simulate(args)
    except (RegistrationError, ValueError, OSError) as exc:
        print(f"mvct-guide simulate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(text)
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> str:
    from registration.couch import couch_correction_6dof
    from registration.dicom_series import read_volume
    from registration.dicom_write import write_ct_series
    from registration.frames import iec_rotation_matrix, lps_to_iec_matrix
    from registration.geometry import LpsPoint
    from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct

    _require_exists(args.planning, "planning CT")
    if args.out.exists() and any(args.out.iterdir()):
        raise ValueError(f"{args.out} is not empty; give a new folder for the simulated MVCT")
    planning = read_volume(args.planning, args.patient_position)
    image = planning.image
    if args.isocenter:
        iso = LpsPoint.parse(args.isocenter)
    else:
        centre_index = [(n - 1) / 2 for n in image.GetSize()]
        iso = LpsPoint.from_array(image.TransformContinuousIndexToPhysicalPoint(centre_index))
    move = _three(args.move_iec_mm, "--move-iec-mm")
    rotate = _three(args.rotate_iec_deg, "--rotate-iec-deg")
    a = lps_to_iec_matrix(planning.patient_position)
    motion = rigid_about(
        iso, a.T @ iec_rotation_matrix(*rotate) @ a, a.T @ np.array(move, dtype=np.float64)
    )
    options = MvctSimulationOptions(
        slice_spacing_mm=args.slice_mm,
        scan_length_mm=args.length_mm,
        pixel_spacing_mm=args.pixel_mm,
        noise_hu=args.noise_hu,
        scan_center=iso,
        random_seed=args.seed,
    )
    daily = simulate_mvct(image, motion, options)
    args.out.mkdir(parents=True, exist_ok=True)
    files = write_ct_series(
        daily,
        args.out,
        patient_position=planning.patient_position,
        patient_id=args.patient_id or planning.patient_id or "QA",
        study_instance_uid=planning.study_instance_uid or None,
        frame_of_reference_uid=planning.frame_of_reference_uid or None,
        series_description="CTrue Image Set (simulated by mvct-guide)",
    )
    expected = couch_correction_6dof(motion, iso, planning.patient_position).rounded()
    truth = {
        "planning_to_daily_lps": motion.as_rows(),
        "isocenter_lps_mm": [iso.x_mm, iso.y_mm, iso.z_mm],
        "expected_couch_correction": expected.as_dict(),
    }
    (args.out.parent / f"{args.out.name}.truth.json").write_text(json.dumps(truth, indent=2))
    e = expected
    return (
        f"Wrote {len(files)} MVCT slices to {args.out}\n"
        f"Expected couch correction at isocentre {iso.x_mm:.1f},{iso.y_mm:.1f},{iso.z_mm:.1f}: "
        f"lateral {e.lateral_mm:+.2f} mm, longitudinal {e.longitudinal_mm:+.2f} mm, "
        f"vertical {e.vertical_mm:+.2f} mm, pitch {e.pitch_deg:+.2f}°, roll {e.roll_deg:+.2f}°, "
        f"yaw {e.yaw_deg:+.2f}°\n"
        f"Check it: mvct-guide register --planning {args.planning} --mvct {args.out} "
        f"--isocenter {iso.x_mm:.1f},{iso.y_mm:.1f},{iso.z_mm:.1f}"
    )


def _three(text: str, flag: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} {text!r} must be three comma-separated numbers") from None
    return a, b, c


def _require_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise ValueError(f"{what} not found: {path}")
