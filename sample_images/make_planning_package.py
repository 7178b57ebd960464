"""Write the RT Structure Set and RT Plan of the sample planning CT (development only).

    python sample_images/make_planning_package.py

Reads sample_images/planning/ (not rewritten) and writes sample_images/rtstruct.dcm and
sample_images/rtplan.dcm: structures built from the CT itself, because the source scan came
without any (see README.md), and a one-beam plan whose isocentre is the sample's isocentre.
Deterministic: fixed UIDs (pydicom root, derived from names) and a fixed date.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydicom.uid import generate_uid

from registration.dicom_series import read_ct_series
from registration.geometry import LpsPoint
from registration.rt_write import RoiMask, write_rt_plan, write_rt_structure_set
from registration.synthetic_structures import body_mask, cylinder_mask, sphere_mask

HERE = Path(__file__).resolve().parent
ISOCENTER = LpsPoint(0.0, 60.0, -40.0)  # as make_samples.py: the mediastinum, mm LPS
PTV_RADIUS_MM = 30.0
#: the spinal canal of this patient, read off the images: centre (x, y) mm LPS, radius, z range
CORD_X_MM, CORD_Y_MM, CORD_RADIUS_MM, CORD_Z_MM = -5.0, 146.0, 5.0, (-128.0, 48.0)
WHEN = datetime(2026, 11, 27, 12, 0, 0)


def _uid(name: str) -> str:
    return generate_uid(entropy_srcs=["mvct-guide sample images", name])


def main() -> None:
    ct = read_ct_series(HERE / "planning")
    image = ct.image
    rois = [
        RoiMask("BODY", "EXTERNAL", (0, 200, 0), body_mask(image)),
        RoiMask("PTV", "PTV", (255, 0, 0), sphere_mask(image, ISOCENTER, PTV_RADIUS_MM)),
        RoiMask(
            "SpinalCord",
            "ORGAN",
            (255, 255, 0),
            cylinder_mask(image, CORD_X_MM, CORD_Y_MM, CORD_RADIUS_MM, *CORD_Z_MM),
        ),
    ]
    rtstruct, rtplan = HERE / "rtstruct.dcm", HERE / "rtplan.dcm"
    for path in (rtstruct, rtplan):
        path.unlink(missing_ok=True)
    structure_set = write_rt_structure_set(
        rtstruct,
        ct,
        rois,
        label="SAMPLE",
        patient_name="Sample^Thorax",
        sop_instance_uid=_uid("rtstruct"),
        series_instance_uid=_uid("rtstruct series"),
        when=WHEN,
    )
    write_rt_plan(
        rtplan,
        ct,
        structure_set,
        ISOCENTER,
        label="SAMPLE",
        patient_name="Sample^Thorax",
        sop_instance_uid=_uid("rtplan"),
        series_instance_uid=_uid("rtplan series"),
        when=WHEN,
    )
    for path in (rtstruct, rtplan):
        print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
