"""Daily-QA positioning on the simulated phantom through the real registration, by slice spacing.

For each MVCT slice spacing (2, 4, 6 mm) and four couch offsets, the phantom
(:func:`registration.qa_phantom.qa_phantom_ct`) is moved by the offset, an MVCT is simulated and
registered; the table gives found − expected per axis (mm, degrees) and ``trusted``.

    PYTHONPATH=$PWD python bench/bench_qa.py
"""

from __future__ import annotations

from registration.couch import CouchCorrection, correction_as_planning_to_daily
from registration.frames import PatientPosition
from registration.geometry import LpsPoint
from registration.qa import evaluate_positioning, expected_correction_for_couch_offset
from registration.qa_phantom import qa_phantom_ct
from registration.result import RegistrationOptions
from registration.rigid import prepare_planning, register
from registration.simulate import MvctSimulationOptions, simulate_mvct
from registration.volume import CtVolume

ISO = LpsPoint(0.0, 0.0, 0.0)
HFS = PatientPosition.HFS
OFFSETS = (
    CouchCorrection(5.0, -3.0, 2.0, 0.0, 0.0, 0.0),
    CouchCorrection(-2.0, 6.0, -4.0, 0.0, 0.0, 0.0),
    CouchCorrection(0.0, 1.5, 0.0, 0.0, 0.0, 0.0),
    CouchCorrection(3.0, -7.0, 1.0, 0.0, 1.0, 0.0),
)


def main() -> None:
    prepared = prepare_planning(CtVolume(qa_phantom_ct(), HFS))
    print(
        f"{'slices':>6} {'case':>4} {'trusted':>7}  "
        + " ".join(f"{a:>8}" for a in ("lat", "long", "vert", "pitch", "roll", "yaw"))
    )
    for slice_mm in (2.0, 4.0, 6.0):
        for case, offset in enumerate(OFFSETS):
            motion = correction_as_planning_to_daily(offset, ISO, HFS).inverse()
            options = MvctSimulationOptions(
                pixel_spacing_mm=1.0, scan_center=ISO, slice_spacing_mm=slice_mm, random_seed=case
            )
            daily = simulate_mvct(prepared.volume.image, motion, options)
            result = register(prepared, CtVolume(daily, HFS), RegistrationOptions(isocenter=ISO))
            expected = expected_correction_for_couch_offset(offset, ISO, HFS)
            check = evaluate_positioning(result.couch_correction_6dof, expected)
            errors = " ".join(f"{a.error:+8.2f}" for a in check.axes)
            print(f"{slice_mm:>6.0f} {case + 1:>4} {result.trusted!s:>7}  {errors}", flush=True)


if __name__ == "__main__":
    main()
