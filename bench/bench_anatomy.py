"""Anatomy-change alert on simulated courses of the real thorax CT (true motions, no registration).

20 ordinary fractions (random set-up error ±8 mm / ±2°, noise 25–60 HU, cupping 0–60 HU, 4 or
6 mm slices, every other one on a different couch) must raise no alert; then a weight-loss
series (0, 2, 4, 6, 8 mm) and a tumour shrinking from 20 to 12 mm radius inside a 30 mm PTV.
Each course starts with three ordinary fractions (the misfit baseline).

    PYTHONPATH=$PWD python bench/bench_anatomy.py [--fractions 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from registration.anatomy import AnatomyFigures, measure_anatomy
from registration.anatomy_alert import evaluate_anatomy_alert
from registration.dicom_series import read_ct_series
from registration.geometry import LpsPoint
from registration.simulate import MvctSimulationOptions, random_motion, simulate_mvct
from registration.simulate_anatomy import (
    coordinate_mm,
    with_couch,
    with_spherical_lesion,
    with_weight_loss,
)

THORAX = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "thorax_4dct_phase00_dicom"
)
ISO = LpsPoint(0.0, 40.0, -40.0)
TUMOUR = LpsPoint(60.0, 40.0, -40.0)


def fraction(
    source: sitk.Image, planning: sitk.Image, ptv: np.ndarray, seed: int
) -> tuple[AnatomyFigures, str]:
    rng = np.random.default_rng(seed)
    motion = random_motion(rng, 8.0, 2.0, ISO)
    options = MvctSimulationOptions(
        pixel_spacing_mm=1.0,
        scan_center=ISO,
        scan_length_mm=100.0,
        slice_spacing_mm=float(rng.choice([4.0, 6.0])),
        noise_hu=float(rng.uniform(25, 60)),
        cupping_hu=float(rng.uniform(0, 60)),
        random_seed=seed,
    )
    label = (
        f"{options.slice_spacing_mm:.0f} mm, noise {options.noise_hu:.0f}, "
        f"cup {options.cupping_hu:.0f}"
    )
    return measure_anatomy(planning, simulate_mvct(source, motion, options), motion, ptv=ptv), label


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fractions", type=int, default=20)
    args = parser.parse_args()
    thorax = sitk.BinShrink(read_ct_series(THORAX).image, [2, 2, 1])
    planning = with_spherical_lesion(thorax, TUMOUR, 20.0)
    shape = planning.GetSize()[::-1]
    distance = np.sqrt(
        sum(
            (np.broadcast_to(coordinate_mm(planning, a), shape) - c) ** 2
            for a, c in enumerate(TUMOUR.as_array())
        )
    )
    ptv = distance <= 30.0
    couch = with_couch(planning)
    print(
        f"{'course':<12}{'fx':>3}  {'change':<10}{'set-up':<30}{'surface mm':>11}{'area %':>8}"
        f"{'misfit':>8}{'Δmisfit':>9}  alert"
    )
    courses: dict[str, list[tuple[str, sitk.Image]]] = {
        "ordinary": [("-", couch if k % 2 else planning) for k in range(args.fractions)],
        "weight-loss": [("-", planning)] * 3
        + [(f"loss {x:.0f} mm", with_weight_loss(planning, x)) for x in (2.0, 4.0, 6.0, 8.0)],
        "shrinkage": [("-", planning)] * 3
        + [("r 12 mm", with_spherical_lesion(thorax, TUMOUR, 12.0))],
    }
    for name, course in courses.items():
        figures: list[AnatomyFigures] = []
        for k, (change, source) in enumerate(course):
            f, label = fraction(source, planning, ptv, 100 * len(name) + k)
            figures.append(f)
            verdict = evaluate_anatomy_alert(figures)
            inc = "" if verdict.misfit_increase is None else f"{verdict.misfit_increase:+.4f}"
            print(
                f"{name:<12}{k + 1:>3}  {change:<10}{label:<30}{f.mean_surface_mm:>11.2f}"
                f"{f.area_change_percent:>8.2f}{f.misfit or float('nan'):>8.4f}{inc:>9}  "
                f"{','.join(r.value for r in verdict.reasons) or '-'}"
            )


if __name__ == "__main__":
    main()
