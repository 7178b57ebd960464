"""The machine's correction on real registrations: a real CT, simulated MVCTs, known motions.

Convention under test (registration.machine_correction): TomoTherapy rolls about the bore axis,
so the translation it applies carries the part that keeps an off-axis isocentre in place; a
verification scan after the machine's move measures the residual the correction predicted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from registration.couch import couch_correction_6dof
from registration.dicom_series import read_ct_series
from registration.frames import PatientPosition, lps_to_iec_matrix, rot_x, rot_y
from registration.geometry import LpsPoint, RigidTransformLps
from registration.machine import RADIXACT, THREE_DOF_COUCH
from registration.machine_correction import correction_for_machine, machine_move_lps
from registration.result import RegistrationOptions
from registration.rigid import prepare_planning, register
from registration.simulate import MvctSimulationOptions, rigid_about, simulate_mvct
from registration.volume import CtVolume

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
THORAX = DATA / "thorax_4dct_phase00_dicom"
ISO = LpsPoint(0.0, 40.0, -40.0)  # inside the thorax (mediastinum)
SIM = MvctSimulationOptions(pixel_spacing_mm=1.0, scan_center=ISO, random_seed=5)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not THORAX.is_dir(), reason=f"real CT data not found at {DATA}"),
]


@pytest.fixture(scope="module")
def thorax() -> CtVolume:
    volume = read_ct_series(THORAX)
    small = sitk.BinShrink(volume.image, [2, 2, 1])
    return CtVolume(small, volume.patient_position, series_instance_uid="thorax")


def _daily(planning: CtVolume, motion: RigidTransformLps) -> CtVolume:
    return CtVolume(simulate_mvct(planning.image, motion, SIM), planning.patient_position)


def test_tomotherapy_roll_about_a_bore_axis_100mm_away_keeps_the_isocentre_on_real_data(
    thorax: CtVolume,
) -> None:
    position = thorax.patient_position
    assert position is PatientPosition.HFS
    a = lps_to_iec_matrix(position)
    # anatomy rolled +1.5° about table Y through the isocentre and moved (3, −2, 4) mm (LPS)
    truth = rigid_about(ISO, a.T @ rot_y(1.5) @ a, np.array([3.0, -2.0, 4.0]))
    axis_point = LpsPoint.from_array(ISO.as_array() - a.T @ np.array([100.0, 0.0, 0.0]))

    result = register(thorax, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    machine = correction_for_machine(
        result.planning_to_daily_lps, ISO, position, RADIXACT, rotation_axis_point=axis_point
    )

    assert machine.to_apply.roll_deg == pytest.approx(-1.5, abs=0.15)
    # the roll about the axis alone would move the isocentre by 100 mm × sin 1.5° = 2.6 mm;
    # with the machine's translation the true anatomy's isocentre comes back within 0.3 mm
    move = machine_move_lps(machine.to_apply, ISO, position, RADIXACT, axis_point)
    back = move.apply(truth.apply(ISO)).as_array()
    assert np.linalg.norm(back - ISO.as_array()) < 0.3
    assert abs(machine.to_apply.vertical_mm - machine.measured.vertical_mm) > 2.0


def test_a_verification_scan_after_a_3dof_move_measures_the_pitch_the_couch_left(
    thorax: CtVolume,
) -> None:
    position = thorax.patient_position
    a = lps_to_iec_matrix(position)
    truth = rigid_about(ISO, a.T @ rot_x(2.0) @ a, np.array([-4.0, 3.0, 2.0]))
    prepared = prepare_planning(thorax)
    first = register(prepared, _daily(thorax, truth), RegistrationOptions(isocenter=ISO))
    machine = correction_for_machine(first.planning_to_daily_lps, ISO, position, THREE_DOF_COUCH)
    # the patient after the couch move, as a verification MVCT sees it
    after_move = truth.then(machine_move_lps(machine.to_apply, ISO, position, THREE_DOF_COUCH))

    verification = register(
        prepared, _daily(thorax, after_move), RegistrationOptions(isocenter=ISO)
    )
    measured_residual = couch_correction_6dof(verification.planning_to_daily_lps, ISO, position)

    assert measured_residual.pitch_deg == pytest.approx(machine.residual.pitch_deg, abs=0.15)
    assert measured_residual.pitch_deg == pytest.approx(-2.0, abs=0.2)
    assert measured_residual.translation_length_mm() < 0.4
