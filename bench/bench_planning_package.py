"""Planning-package benchmark on the real full-resolution thorax CT (512 × 512 × 141).

Builds BODY, bone, a PTV sphere and a cord-like cylinder on the thorax CT in ../shared/data,
writes them as an RT Structure Set and reads it back, then times each step the service runs per
course or per fraction: reading the structure set, rasterising every ROI (Dice against the source
mask), the 15 mm planning region around the PTV, surface points and residuals for a 3° pitch left
by a 4-DOF couch. Prints a table; the temporary files are deleted.

    python bench/bench_planning_package.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import SimpleITK as sitk

from registration.couch import Dof, couch_correction_for_dof
from registration.dicom_series import read_ct_series
from registration.frames import iec_rotation_matrix, lps_to_iec_matrix
from registration.geometry import LpsPoint
from registration.residuals import structure_residuals, structure_surfaces
from registration.rt_raster import planning_region_mask, rasterize_structure
from registration.rt_write import RoiMask, write_rt_structure_set
from registration.rtstruct import read_structure_set
from registration.simulate import rigid_about
from registration.synthetic_structures import body_mask, bone_mask, cylinder_mask, sphere_mask

T = TypeVar("T")
ISOCENTER = LpsPoint(0.0, 60.0, -40.0)
ROOT = Path(__file__).resolve().parents[1]


def timed(
    rows: list[tuple[str, float, str]], label: str, step: Callable[[], T], note: str = ""
) -> T:
    start = time.perf_counter()
    result = step()
    rows.append((label, time.perf_counter() - start, note))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    ct = timed(
        rows, "read CT series", lambda: read_ct_series(args.shared / "thorax_4dct_phase00_dicom")
    )
    image = ct.image
    rois = timed(
        rows,
        "build 4 masks (threshold, sphere, cylinder)",
        lambda: [
            RoiMask("BODY", "EXTERNAL", (0, 255, 0), body_mask(image)),
            RoiMask("Bones", "ORGAN", (230, 230, 200), bone_mask(image)),
            RoiMask("PTV", "PTV", (255, 0, 0), sphere_mask(image, ISOCENTER, 30.0)),
            RoiMask(
                "SpinalCord", "ORGAN", (255, 255, 0), cylinder_mask(image, -5, 146, 5, -150, 40)
            ),
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rtss.dcm"
        timed(rows, "write RT Structure Set", lambda: write_rt_structure_set(path, ct, rois))
        size_mb = path.stat().st_size / 1e6
        structure_set = timed(
            rows, "read RT Structure Set", lambda: read_structure_set(path), f"{size_mb:.1f} MB"
        )
    for roi in rois:
        structure = structure_set.structure(roi.name)
        mask = timed(
            rows, f"rasterise {roi.name}", lambda s=structure: rasterize_structure(s, image)
        )
        dice = 2 * np.count_nonzero(mask & roi.mask) / (mask.sum() + roi.mask.sum())
        rows[-1] = (*rows[-1][:2], f"{len(structure.contours)} contours, Dice {dice:.4f}")
    region = timed(
        rows,
        "planning region PTV + 15 mm",
        lambda: planning_region_mask(structure_set, "PTV", image),
    )
    rows[-1] = (*rows[-1][:2], f"{int(sitk.GetArrayViewFromImage(region).sum())} voxels")
    surfaces = timed(
        rows, "surface points of every ROI", lambda: structure_surfaces(structure_set, image)
    )
    a = lps_to_iec_matrix(ct.patient_position)
    motion = rigid_about(ISOCENTER, a.T @ iec_rotation_matrix(3.0, 0.0, 0.0) @ a, np.zeros(3))
    applied = couch_correction_for_dof(
        motion, ISOCENTER, ct.patient_position, Dof.TRANSLATIONS_ROLL
    )
    residuals = timed(
        rows,
        "residuals (3° pitch, 4-DOF)",
        lambda: structure_residuals(motion, applied, ISOCENTER, ct.patient_position, surfaces),
    )
    rows[-1] = (*rows[-1][:2], ", ".join(f"{r.structure} {r.max_mm:.2f} mm" for r in residuals))
    print(f"{'step':<45} {'seconds':>8}  note")
    for label, seconds, note in rows:
        print(f"{label:<45} {seconds:8.2f}  {note}")


if __name__ == "__main__":
    main()
