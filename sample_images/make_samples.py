"""Rebuild the sample images from the real thorax CT in ../shared/data (not needed at run time).

    python sample_images/make_samples.py [--shared ../shared/data]

Writes sample_images/planning/ (a cropped, 2× in-plane downsampled planning CT) and
sample_images/mvct/ (a simulated MVCT of it with the known motion below), and prints the couch
correction the registration should find. Deterministic pixels and study/series UIDs (the
SOP Instance UIDs are new on every rebuild).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

from registration.couch import couch_correction_6dof
from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.frames import iec_rotation_matrix, lps_to_iec_matrix
from registration.geometry import LpsPoint
from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct

HERE = Path(__file__).resolve().parent
ISOCENTER = LpsPoint(0.0, 60.0, -40.0)  # mediastinum, mm DICOM LPS
#: the anatomy's set-up error today, in IEC 61217 table axes (HFS)
MOVE_IEC_MM = (2.5, -3.0, 1.5)  # lateral, longitudinal, vertical
ROTATE_IEC_DEG = (0.5, 1.0, -0.5)  # pitch, roll, yaw, about the isocentre
CROP_LPS_MM = ((-215.0, 215.0), (-125.0, 220.0), (-130.0, 50.0))  # body only, no couch


def _uid(name: str) -> str:
    """A fixed UID under pydicom's root, derived from a name (rebuilds give the same UIDs)."""
    return generate_uid(entropy_srcs=["mvct-guide sample images", name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = parser.parse_args()
    source = read_ct_series(args.shared / "thorax_4dct_phase00_dicom")
    small = sitk.BinShrink(source.image, [2, 2, 1])
    lo = small.TransformPhysicalPointToIndex([c[0] for c in CROP_LPS_MM])
    hi = small.TransformPhysicalPointToIndex([c[1] for c in CROP_LPS_MM])
    planning = small[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]

    a = lps_to_iec_matrix(source.patient_position)
    motion = rigid_about(
        ISOCENTER,
        a.T @ iec_rotation_matrix(*ROTATE_IEC_DEG) @ a,
        a.T @ np.array(MOVE_IEC_MM),
    )
    options = MvctSimulationOptions(
        slice_spacing_mm=4.0,
        pixel_spacing_mm=1.5625,  # 256 over 40 cm keeps the sample small; real MVCT: 512
        scan_length_mm=120.0,
        noise_hu=40.0,
        scan_center=ISOCENTER,
        random_seed=20261127,
    )
    daily = simulate_mvct(planning, motion, options)

    study, frame = _uid("study"), _uid("frame of reference")
    for name, image, series, description in (
        ("planning", planning, _uid("planning series"), "Planning CT (sample, thorax 4D-CT)"),
        ("mvct", daily, _uid("mvct series"), "CTrue Image Set (simulated)"),
    ):
        folder = HERE / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        write_ct_series(
            image,
            folder,
            patient_position=source.patient_position,
            patient_id="MVCT-SAMPLE-01",
            patient_name="Sample^Thorax",
            study_instance_uid=study,
            series_instance_uid=series,
            frame_of_reference_uid=frame,
            series_description=description,
            series_number=1 if name == "planning" else 2,
        )
    expected = couch_correction_6dof(motion, ISOCENTER, source.patient_position).rounded()
    truth = {
        "isocenter_lps_mm": [ISOCENTER.x_mm, ISOCENTER.y_mm, ISOCENTER.z_mm],
        "anatomy_move_iec_mm": MOVE_IEC_MM,
        "anatomy_rotation_iec_deg": ROTATE_IEC_DEG,
        "planning_to_daily_lps": motion.as_rows(),
        "expected_couch_correction": expected.as_dict(),
    }
    (HERE / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(json.dumps(truth["expected_couch_correction"], indent=2))


if __name__ == "__main__":
    main()
