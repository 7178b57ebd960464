"""Registration accuracy and speed on real CTs with simulated MVCTs, side by side with baselines.

For each case: a random rigid motion (±15 mm, ±3° by default), a simulated MVCT (noise 30–60 HU,
4 or 6 mm slices, 80–150 mm scan, 40 cm FOV) of one of the real planning CTs in ../shared/data.
Three methods register the same images in the same process, one after the other:

* ``mvct-guide``: :func:`registration.rigid.register` on a prepared (cached) planning CT;
* ``elastix-default``: elastix's default rigid parameter map (``GetDefaultParameterMap("rigid")``)
  on the full-resolution images, with the same field-of-view mask on the MVCT (without it elastix
  matches the padding circle);
* ``sitk``: SimpleITK's registration framework, Euler 3-D, Mattes MI, 3-level pyramid, regular
  step gradient descent, same mask.

TRE = distance between true and found position of points filling a 50 mm sphere about the
isocentre (mean and max); rotation error = angle of R_found · R_trueᵀ; success = max TRE ≤ 1 mm.
Times are medians over the cases, registration only (images in memory, planning prepared).

Then, on the thorax CT: a capture-range table (set-up errors of ±20 … ±50 mm and ±5 … ±12° on
all three axes at once, random signs; every method), and the hard cases of
``bench/hard_cases.py`` (mvct-guide only) as a confusion matrix trusted/untrusted × right/wrong.
The one-off ITK load (``warm_up``) is printed first.

    python bench/bench_registration.py --cases 20 [--methods mvct-guide,elastix-default,sitk]
        [--capture-per-row 3] [--hard-per-kind 2] [--verbose]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from registration.dicom_series import read_volume
from registration.elastix_run import _itk, to_itk, warm_up
from registration.errors import RegistrationError
from registration.frames import PatientPosition, rot_x, rot_y, rot_z
from registration.geometry import LpsPoint, RigidTransformLps
from registration.pyramid import padding_mask
from registration.result import RegistrationOptions
from registration.rigid import prepare_planning, register
from registration.simulate import MvctSimulationOptions, random_motion, rigid_about, simulate_mvct
from registration.volume import CtVolume

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hard_cases import KINDS, ORDINARY, build

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PLANNING_CTS = {
    "thorax-4dct": DATA / "thorax_4dct_phase00_dicom",
    "ibsi-lung": DATA / "ibsi1_ct_lung_dicom",
    "totalseg-abdomen": DATA / "small_volumes" / "totalsegmentator_example_ct.nii.gz",
}


@dataclass
class Case:
    name: str
    planning: CtVolume
    daily: CtVolume
    truth: RigidTransformLps  # planning → daily
    isocenter: LpsPoint
    description: str


@dataclass
class Outcome:
    tre_mean_mm: float
    tre_max_mm: float
    rotation_error_deg: float
    seconds: float
    trusted: bool = True
    reasons: tuple[str, ...] = ()


def load_planning(name: str) -> CtVolume:
    path = PLANNING_CTS[name]
    position = PatientPosition.HFS if path.suffix in {".gz", ".mha", ".nrrd"} else None
    return read_volume(path, patient_position=position)


def body_point(planning: CtVolume, rng: np.random.Generator) -> LpsPoint:
    """A random isocentre inside the body (HU > -300), away from the CT's ends."""
    arr = sitk.GetArrayViewFromImage(planning.image)
    nz = arr.shape[0]
    lo, hi = int(nz * 0.3), max(int(nz * 0.7), int(nz * 0.3) + 1)
    candidates = np.argwhere(arr[lo:hi] > -300)
    k, j, i = candidates[rng.integers(len(candidates))]
    return LpsPoint.from_array(
        planning.image.TransformIndexToPhysicalPoint([int(i), int(j), int(k + lo)])
    )


def make_cases(n: int, seed: int, max_mm: float, max_deg: float, names: list[str]) -> list[Case]:
    rng = np.random.default_rng(seed)
    plannings = {name: load_planning(name) for name in names}
    cases = []
    for k in range(n):
        name = names[k % len(names)]
        planning = plannings[name]
        iso = body_point(planning, rng)
        motion = random_motion(rng, max_mm, max_deg, iso)
        slice_mm = float(rng.choice([4.0, 6.0]))
        length_mm = float(rng.uniform(80, 150))
        noise = float(rng.uniform(30, 60))
        options = MvctSimulationOptions(
            slice_spacing_mm=slice_mm,
            scan_length_mm=length_mm,
            noise_hu=noise,
            scan_center=iso,
            random_seed=int(rng.integers(1 << 30)),
        )
        daily = CtVolume(simulate_mvct(planning.image, motion, options), planning.patient_position)
        d = motion.apply(iso).as_array() - iso.as_array()
        rot_deg = motion.rotation_angle_deg()
        desc = (
            f"{name} slice {slice_mm:.0f} mm, {length_mm:.0f} mm, noise {noise:.0f} HU, "
            f"shift ({d[0]:+.1f},{d[1]:+.1f},{d[2]:+.1f}) mm, rot {rot_deg:.1f}°"
        )
        cases.append(Case(name, planning, daily, motion, iso, desc))
    return cases


def sphere_points(center: LpsPoint, radius_mm: float = 50.0) -> np.ndarray:
    g = np.linspace(-radius_mm, radius_mm, 21)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    return pts[np.sum(pts**2, axis=1) <= radius_mm**2] + center.as_array()


def score(case: Case, found: RigidTransformLps, seconds: float) -> Outcome:
    pts = sphere_points(case.isocenter)
    err = np.linalg.norm(found.apply_array(pts) - case.truth.apply_array(pts), axis=1)
    r = found.rotation @ case.truth.rotation.T
    angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    return Outcome(float(err.mean()), float(err.max()), angle, seconds)


def fov_mask(daily: sitk.Image) -> sitk.Image:
    pad = padding_mask(daily)
    arr = np.broadcast_to(~pad, sitk.GetArrayViewFromImage(daily).shape).astype(np.uint8)
    mask = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    mask.CopyInformation(daily)
    return mask


def run_ours(case: Case, cache: dict[str, object]) -> Outcome:
    prepared = cache.get(case.name)
    if prepared is None:
        prepared = cache[case.name] = prepare_planning(case.planning)
    start = time.perf_counter()
    result = register(prepared, case.daily, RegistrationOptions(isocenter=case.isocenter))  # type: ignore[arg-type]
    outcome = score(case, result.planning_to_daily_lps, time.perf_counter() - start)
    outcome.trusted = result.trusted
    outcome.reasons = tuple(
        w.removeprefix("not trusted: ").split(" (")[0].split(";")[0][:48]
        for w in result.warnings
        if w.startswith("not trusted")
    )
    return outcome


def run_elastix_default(case: Case, cache: dict[str, object]) -> Outcome:
    itk = _itk()
    fixed = to_itk(case.daily.image)
    moving = to_itk(case.planning.image)
    mask = to_itk(fov_mask(case.daily.image), np.uint8)
    params = itk.ParameterObject.New()
    pmap = params.GetDefaultParameterMap("rigid")
    pmap["WriteResultImage"] = ["false"]
    params.AddParameterMap(pmap)
    start = time.perf_counter()
    method = itk.ElastixRegistrationMethod.New(
        fixed_image=fixed,
        moving_image=moving,
        parameter_object=params,
        fixed_mask=mask,
        log_to_console=False,
    )
    method.SetNumberOfThreads(2)
    method.UpdateLargestPossibleRegion()
    seconds = time.perf_counter() - start
    tmap = method.GetTransformParameterObject().GetParameterMap(0)
    from registration.elastix_run import euler_parameters_to_matrix

    m = euler_parameters_to_matrix(
        [float(v) for v in tmap["TransformParameters"]],
        [float(v) for v in tmap["CenterOfRotationPoint"]],
        compute_zyx=tmap.get("ComputeZYX", ("false",))[0] == "true",
    )
    return score(case, RigidTransformLps.from_array(m).inverse(), seconds)


def run_sitk(case: Case, cache: dict[str, object]) -> Outcome:
    fixed = sitk.Cast(case.daily.image, sitk.sitkFloat32)
    moving = sitk.Cast(case.planning.image, sitk.sitkFloat32)
    mask = fov_mask(fixed)
    start = time.perf_counter()
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.02, seed=1)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 200, relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    init = sitk.Euler3DTransform()
    init.SetCenter(case.isocenter.as_array().tolist())
    method.SetInitialTransform(init, inPlace=False)
    found = method.Execute(fixed, moving)
    seconds = time.perf_counter() - start
    # found maps daily (fixed) points to planning points; build its matrix from point images
    origin = np.array(found.TransformPoint((0.0, 0.0, 0.0)))
    cols = [np.array(found.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    m = np.eye(4)
    m[:3, :3] = np.stack(cols, axis=1)
    m[:3, 3] = origin
    u, _, vt = np.linalg.svd(m[:3, :3])
    m[:3, :3] = u @ vt
    return score(case, RigidTransformLps.from_array(m).inverse(), seconds)


METHODS: dict[str, Callable[[Case, dict[str, object]], Outcome]] = {
    "mvct-guide": run_ours,
    "elastix-default": run_elastix_default,
    "sitk": run_sitk,
}


def capture_cases(
    planning: CtVolume, iso: LpsPoint, per_row: int, seed: int
) -> list[tuple[str, Case]]:
    """Set-up errors of a given size on every axis at once (random signs), rotations likewise."""
    rng = np.random.default_rng(seed)
    out = []
    for shift_mm, angle_deg in CAPTURE_ROWS:
        for _ in range(per_row):
            t = rng.choice([-1.0, 1.0], size=3) * shift_mm
            a = rng.choice([-1.0, 1.0], size=3) * angle_deg
            motion = rigid_about(iso, rot_z(a[2]) @ rot_y(a[1]) @ rot_x(a[0]), t)
            options = MvctSimulationOptions(
                slice_spacing_mm=4.0,
                scan_length_mm=120.0,
                noise_hu=40.0,
                scan_center=iso,
                pixel_spacing_mm=1.5,
                random_seed=int(rng.integers(1 << 30)),
            )
            daily = CtVolume(
                simulate_mvct(planning.image, motion, options), planning.patient_position
            )
            row = f"±{shift_mm:.0f} mm ±{angle_deg:.0f}°"
            out.append((row, Case("thorax-4dct", planning, daily, motion, iso, row)))
    return out


CAPTURE_ROWS = ((20.0, 5.0), (30.0, 8.0), (40.0, 10.0), (50.0, 12.0))


def print_capture(rows: dict[str, dict[str, list[Outcome]]], methods: list[str]) -> None:
    print("\nCapture range: set-up error of that size on all three axes at once (random signs)")
    print(
        "| set-up error | " + " | ".join(f"{m} right" for m in methods) + " | mvct-guide trusted |"
    )
    print("|---|" + "---|" * (len(methods) + 1))
    for row, by_method in rows.items():
        cells = [
            f"{sum(o.tre_max_mm <= 1.0 for o in by_method[m])}/{len(by_method[m])}" for m in methods
        ]
        ours = by_method.get("mvct-guide", [])
        cells.append(f"{sum(o.trusted for o in ours)}/{len(ours)}")
        print(f"| {row} | " + " | ".join(cells) + " |")


def print_ratios_per_ct(
    cases: list[Case], results: dict[str, list[Outcome]], methods: list[str]
) -> None:
    """Median seconds per planning CT and method, and each method's ratio to the first.

    A baseline's time grows with the planning CT (elastix's default map smooths and samples it
    at full resolution), so the ratio is given per CT as well as over all cases.
    """
    print("\nMedian seconds per planning CT (ratio to " + methods[0] + ")")
    print("| planning CT | size | cases | " + " | ".join(methods) + " |")
    print("|---|---|---|" + "---|" * len(methods))
    for name in dict.fromkeys(c.name for c in cases):
        picked = [k for k, c in enumerate(cases) if c.name == name]
        size = "×".join(str(v) for v in cases[picked[0]].planning.image.GetSize())
        base = statistics.median(results[methods[0]][k].seconds for k in picked)
        cells = []
        for m in methods:
            median = statistics.median(results[m][k].seconds for k in picked)
            cells.append(f"{median:.2f}" + ("" if m == methods[0] else f" ({median / base:.1f}×)"))
        print(f"| {name} | {size} | {len(picked)} | " + " | ".join(cells) + " |")


def print_confusion(hard: list[tuple[str, Outcome]]) -> None:
    print("\nHard cases (mvct-guide): trusted/untrusted × right (max TRE ≤ 1 mm)/wrong")
    print("| kind | right+trusted | right+untrusted | wrong+untrusted | wrong+TRUSTED | reasons |")
    print("|---|---|---|---|---|---|")
    totals = [0, 0, 0, 0]
    for kind in KINDS:
        outs = [o for k, o in hard if k == kind]
        if not outs:
            continue
        c = [
            sum(o.tre_max_mm <= 1.0 and o.trusted for o in outs),
            sum(o.tre_max_mm <= 1.0 and not o.trusted for o in outs),
            sum(not o.tre_max_mm <= 1.0 and not o.trusted for o in outs),  # NaN: refused
            sum(not o.tre_max_mm <= 1.0 and o.trusted for o in outs),
        ]
        totals = [a + b for a, b in zip(totals, c, strict=True)]
        reasons = sorted({r for o in outs for r in o.reasons})
        print(f"| {kind} | " + " | ".join(str(v) for v in c) + f" | {'; '.join(reasons)} |")
    print("| **all** | " + " | ".join(str(v) for v in totals) + " | |")
    ordinary = [o for k, o in hard if k in ORDINARY and o.tre_max_mm <= 1.0]
    print(
        f"ordinary hard kinds ({', '.join(ORDINARY)}): right but untrusted "
        f"{sum(not o.trusted for o in ordinary)}/{len(ordinary)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--max-mm", type=float, default=15.0)
    parser.add_argument("--max-deg", type=float, default=3.0)
    parser.add_argument("--methods", default="mvct-guide,elastix-default,sitk")
    parser.add_argument("--cts", default=",".join(PLANNING_CTS))
    parser.add_argument("--capture-per-row", type=int, default=3, help="0: no capture table")
    parser.add_argument("--hard-per-kind", type=int, default=2, help="0: no hard cases")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.cts.split(",") if PLANNING_CTS[n].exists()]
    if not names:
        print(f"no planning CTs found under {DATA}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    warm_up()
    print(f"warm_up (import itk + elastix, once per process): {time.perf_counter() - start:.1f} s")
    cases = make_cases(args.cases, args.seed, args.max_mm, args.max_deg, names)
    methods = args.methods.split(",")
    results: dict[str, list[Outcome]] = {m: [] for m in methods}
    caches: dict[str, dict[str, object]] = {m: {} for m in methods}
    for case in cases:
        line = [f"{case.description:80s}"]
        for m in methods:  # side by side: every method on the same case before the next case
            o = METHODS[m](case, caches[m])
            results[m].append(o)
            flag = "" if o.trusted else " UNTRUSTED"
            line.append(f"{m}: {o.tre_mean_mm:.2f}/{o.tre_max_mm:.2f} mm {o.seconds:.2f} s{flag}")
        if args.verbose:
            print("  ".join(line), flush=True)
    thorax = load_planning("thorax-4dct")
    iso = LpsPoint(0.0, 40.0, -40.0)
    capture: dict[str, dict[str, list[Outcome]]] = {}
    for row, case in capture_cases(thorax, iso, args.capture_per_row, args.seed + 1):
        for m in methods:
            o = METHODS[m](case, caches[m])
            capture.setdefault(row, {}).setdefault(m, []).append(o)
            if args.verbose:
                print(f"capture {row} {m}: {o.tre_max_mm:.2f} mm trusted={o.trusted}", flush=True)
    hard: list[tuple[str, Outcome]] = []
    rng = np.random.default_rng(args.seed + 2)
    for kind in KINDS if args.hard_per_kind else ():
        for _ in range(args.hard_per_kind):
            hc = build(kind, thorax, iso, rng)
            case = Case(kind, hc.planning, hc.daily, hc.truth, hc.isocenter, kind)
            try:
                o = run_ours(case, {})
            except RegistrationError as exc:  # refused with a message: not trusted, not wrong
                o = Outcome(float("nan"), float("nan"), float("nan"), 0.0, False)
                o.reasons = (f"refused: {str(exc)[:48]}",)
            hard.append((kind, o))
            if args.verbose:
                print(
                    f"hard {kind}: {o.tre_max_mm:.2f} mm trusted={o.trusted} {o.reasons}",
                    flush=True,
                )
    print(
        f"\n{len(cases)} cases, motions within ±{args.max_mm} mm / ±{args.max_deg}°, "
        f"CTs: {', '.join(names)}"
    )
    columns = [
        "method",
        "TRE mean",
        "TRE max",
        "worst",
        "rot err",
        "success",
        "median s",
        "p90 s",
        "silent fail",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    base = statistics.median(o.seconds for o in results[methods[0]])
    for m in methods:
        rs = results[m]
        secs = sorted(o.seconds for o in rs)
        row = [
            m,
            f"{np.mean([o.tre_mean_mm for o in rs]):.3f} mm",
            f"{np.mean([o.tre_max_mm for o in rs]):.3f} mm",
            f"{max(o.tre_max_mm for o in rs):.3f} mm",
            f"{np.mean([o.rotation_error_deg for o in rs]):.3f}°",
            f"{sum(o.tre_max_mm <= 1.0 for o in rs)}/{len(rs)}",
            f"{statistics.median(secs):.2f}",
            f"{secs[int(0.9 * (len(secs) - 1))]:.2f}",
            f"{sum(o.tre_max_mm > 1.0 and o.trusted for o in rs)}",
        ]
        print("| " + " | ".join(row) + " |")
    print(
        "TRE: over points filling a 50 mm sphere about the isocentre; TRE max = mean over cases of "
        "each case's max; worst = max over cases; success: max TRE <= 1 mm; silent fail: > 1 mm "
        "yet trusted"
    )
    for m in methods[1:]:
        ratio = statistics.median(o.seconds for o in results[m]) / base
        print(f"median time {m} / {methods[0]}: {ratio:.1f}×")
    print_ratios_per_ct(cases, results, methods)
    ours = results.get("mvct-guide", [])
    right = [o for o in ours if o.tre_max_mm <= 1.0]
    print(
        f"ordinary cases right but untrusted (mvct-guide): {sum(not o.trusted for o in right)}"
        f"/{len(right)}"
    )
    if capture:
        print_capture(capture, methods)
    if hard:
        print_confusion(hard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
