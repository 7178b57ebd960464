"""Residual displacement of structures after the couch applies what it can (known motions).

Sign: ``planning_to_daily`` maps a planning point to where its anatomy is today; the couch
correction undoes it; the residual is what the applied correction leaves (module docstring of
registration.residuals). Analytic reference: a rotation θ about an axis through the isocentre
moves a point at distance ρ from that axis by 2·ρ·sin(θ/2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from registration.couch import Dof, couch_correction_6dof, couch_correction_for_dof
from registration.frames import PatientPosition, iec_rotation_matrix, lps_to_iec_matrix
from registration.geometry import LpsPoint, RigidTransformLps
from registration.residuals import (
    ISOCENTER_SPHERE_TYPE,
    ResidualPolicy,
    StructureResidual,
    StructureSurface,
    describe_uncorrected,
    isocenter_sphere_surface,
    residual_surfaces,
    residual_warnings,
    structure_residuals,
    structure_surfaces,
)
from registration.rt_raster import surface_points_lps_mm
from registration.rtstruct import PlanarContour, Structure, StructureSet
from registration.simulate import rigid_about
from registration.synthetic_structures import cylinder_mask, sphere_mask

HFS = PatientPosition.HFS
ISO = LpsPoint(0.0, 0.0, 0.0)
PTV_RADIUS_MM = 40.0


def grid() -> sitk.Image:
    """1 mm voxels, the isocentre on a voxel centre, 120 mm along z."""
    image = sitk.Image((101, 121, 121), sitk.sitkUInt8)
    image.SetOrigin((-50.0, -50.0, -60.0))
    return image


def anatomy_motion(
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
    yaw_deg: float = 0.0,
    shift_iec_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> RigidTransformLps:
    """The anatomy's motion today, given in IEC table axes (HFS), about the isocentre."""
    a = lps_to_iec_matrix(HFS)
    rotation = a.T @ iec_rotation_matrix(pitch_deg, roll_deg, yaw_deg) @ a
    return rigid_about(ISO, rotation, a.T @ np.array(shift_iec_mm))


def ptv_surface() -> StructureSurface:
    mask = sphere_mask(grid(), ISO, PTV_RADIUS_MM)
    return StructureSurface("PTV", "PTV", surface_points_lps_mm(mask, grid()))


def test_a_3_degree_pitch_left_by_a_4_dof_couch_moves_the_ptv_edge_by_the_analytic_amount() -> None:
    motion = anatomy_motion(pitch_deg=3.0, shift_iec_mm=(2.0, -1.5, 3.0))
    applied = couch_correction_for_dof(motion, ISO, HFS, Dof.TRANSLATIONS_ROLL)
    (ptv,) = structure_residuals(motion, applied, ISO, HFS, [ptv_surface()])
    analytic_mm = 2 * PTV_RADIUS_MM * math.sin(math.radians(3.0) / 2)  # 2.094 mm
    assert ptv.max_mm == pytest.approx(analytic_mm, abs=0.1)
    assert ptv.p95_mm < ptv.max_mm
    words = describe_uncorrected(motion, applied, ISO, HFS)
    assert words == "an uncorrected pitch of -3.0°"
    warnings = residual_warnings([ptv], words, ResidualPolicy(ptv_margin_mm=3.0))
    assert warnings == (
        "an uncorrected pitch of -3.0° moves the PTV edge by 2.1 mm, at least half the 3 mm "
        "PTV margin",
    )


def test_the_same_pitch_applied_by_a_6_dof_couch_leaves_nothing() -> None:
    motion = anatomy_motion(pitch_deg=3.0, roll_deg=-1.0, shift_iec_mm=(2.0, -1.5, 3.0))
    applied = couch_correction_6dof(motion, ISO, HFS)
    (ptv,) = structure_residuals(motion, applied, ISO, HFS, [ptv_surface()])
    assert ptv.max_mm < 1e-6
    assert describe_uncorrected(motion, applied, ISO, HFS) == "the remaining motion"


def test_a_pure_translation_leaves_under_a_tenth_of_a_millimetre_on_any_couch() -> None:
    motion = anatomy_motion(shift_iec_mm=(4.0, -7.0, 2.5))
    for dof in Dof:
        applied = couch_correction_for_dof(motion, ISO, HFS, dof)
        (ptv,) = structure_residuals(motion, applied, ISO, HFS, [ptv_surface()])
        assert ptv.max_mm < 0.1
        assert residual_warnings([ptv], "", ResidualPolicy()) == ()


def test_a_shift_the_couch_was_not_given_is_reported_at_the_isocentre() -> None:
    motion = anatomy_motion(shift_iec_mm=(0.0, 0.0, 2.0))
    nothing = couch_correction_for_dof(RigidTransformLps.identity(), ISO, HFS, Dof.SIX)
    (ptv,) = structure_residuals(motion, nothing, ISO, HFS, [ptv_surface()])
    assert ptv.max_mm == pytest.approx(2.0, abs=1e-9)
    assert describe_uncorrected(motion, nothing, ISO, HFS) == (
        "an uncorrected shift of 2.0 mm at the isocentre"
    )


def test_without_structures_the_50_mm_sphere_shows_the_issue_s_example() -> None:
    motion = anatomy_motion(pitch_deg=4.5)
    applied = couch_correction_for_dof(motion, ISO, HFS, Dof.TRANSLATIONS_ROLL)
    (sphere,) = structure_residuals(motion, applied, ISO, HFS, [isocenter_sphere_surface(ISO)])
    assert sphere.max_mm == pytest.approx(2 * 50 * math.sin(math.radians(4.5) / 2), abs=0.05)
    (warning,) = residual_warnings(
        [sphere], describe_uncorrected(motion, applied, ISO, HFS), ResidualPolicy()
    )
    assert warning.startswith(
        "an uncorrected pitch of -4.5° moves the 50 mm sphere around the isocentre by 3.9 mm"
    )


def cord_surface(name: str, kind: str) -> StructureSurface:
    # a cord 45 mm posterior of the isocentre, 100 mm long
    mask = cylinder_mask(grid(), 0.0, 45.0, 5.0, -50.0, 50.0)
    return StructureSurface(name, kind, surface_points_lps_mm(mask, grid()))


def test_a_serial_organ_moving_more_than_its_prv_margin_is_a_warning() -> None:
    motion = anatomy_motion(pitch_deg=3.0)
    applied = couch_correction_for_dof(motion, ISO, HFS, Dof.TRANSLATIONS_ROLL)
    surfaces = [
        cord_surface("SpinalCord", "ORGAN"),
        cord_surface("Oesophagus", "ORGAN"),
        cord_surface("cord PRV ring", "AVOIDANCE"),
    ]
    residuals = structure_residuals(motion, applied, ISO, HFS, surfaces)
    farthest_mm = math.hypot(50.0, 50.0)  # cylinder end, 50 mm along z and 50 mm posterior
    assert residuals[0].max_mm == pytest.approx(
        2 * farthest_mm * math.sin(math.radians(1.5)), abs=0.2
    )
    words = describe_uncorrected(motion, applied, ISO, HFS)
    (warning,) = residual_warnings(residuals, words, ResidualPolicy(prv_margin_mm=3.0))
    assert "moves SpinalCord by 3." in warning and "3 mm planning-risk-volume margin" in warning
    assert residual_warnings(residuals, words, ResidualPolicy(prv_margin_mm=5.0)) == ()
    custom = ResidualPolicy(serial_oar_name_parts=("oesophagus",))
    assert len(residual_warnings(residuals, words, custom)) == 1


def test_residuals_as_the_fraction_json_item() -> None:
    item = StructureResidual("PTV_60", "PTV", 2.5, 1.9, 100).as_dict()
    assert item == {"structure": "PTV_60", "type": "PTV", "max_mm": 2.5, "p95_mm": 1.9}


def test_structure_surfaces_skip_rois_outside_the_grid_and_keep_names_and_types() -> None:
    square = np.array([[-5.0, -5.0, 0.0], [5.0, -5.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 5.0, 0.0]])
    package = StructureSet(
        "1",
        "P",
        "",
        "",
        None,
        "APPROVED",
        "9",
        "",
        (),
        (
            Structure(1, "PTV", "PTV", None, (PlanarContour(square + np.array([0.5, 0.5, 0.0])),)),
            Structure(2, "Empty", "ORGAN", None, ()),
        ),
    )
    (surface,) = structure_surfaces(package, grid())
    assert (surface.name, surface.interpreted_type) == ("PTV", "PTV")
    assert surface.points_lps_mm.shape == (10 * 10, 3)  # a one-slice square: every voxel


@settings(max_examples=50, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-5.0, 5.0)] * 3),
    shift=st.tuples(*[st.floats(-20.0, 20.0)] * 3),
    position=st.sampled_from(list(PatientPosition)),
)
def test_a_full_6_dof_correction_leaves_no_residual_for_any_motion_and_position(
    angles: tuple[float, float, float],
    shift: tuple[float, float, float],
    position: PatientPosition,
) -> None:
    a = lps_to_iec_matrix(position)
    iso = LpsPoint(12.0, -30.0, 55.0)
    motion = rigid_about(iso, a.T @ iec_rotation_matrix(*angles) @ a, a.T @ np.array(shift))
    applied = couch_correction_6dof(motion, iso, position)
    sphere = isocenter_sphere_surface(iso)
    (residual,) = structure_residuals(motion, applied, iso, position, [sphere])
    assert residual.max_mm < 1e-6


@pytest.mark.parametrize("position", list(PatientPosition))
def test_an_uncorrected_yaw_is_named_yaw_in_every_patient_position(
    position: PatientPosition,
) -> None:
    a = lps_to_iec_matrix(position)
    motion = rigid_about(ISO, a.T @ iec_rotation_matrix(0.0, 0.0, 2.0) @ a, np.zeros(3))
    applied = couch_correction_for_dof(motion, ISO, position, Dof.TRANSLATIONS_ROLL)
    words = describe_uncorrected(motion, applied, ISO, position)
    assert words == "an uncorrected yaw of -2.0°"
    (sphere,) = structure_residuals(motion, applied, ISO, position, [isocenter_sphere_surface(ISO)])
    assert sphere.max_mm == pytest.approx(2 * 50 * math.sin(math.radians(1.0)), abs=0.05)


def test_the_isocentre_sphere_stands_in_for_the_target_only_when_no_roi_is_a_ptv() -> None:
    square = np.array([[-5.0, -5.0, 0.0], [5.0, -5.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 5.0, 0.0]])
    contour = PlanarContour(square + np.array([0.5, 0.5, 0.0]))

    def package(kind: str) -> StructureSet:
        structure = Structure(1, "Target", kind, None, (contour,))
        return StructureSet("1", "P", "", "", None, "APPROVED", "9", "", (), (structure,))

    with_ptv = residual_surfaces(package("PTV"), grid(), ISO)
    assert [s.interpreted_type for s in with_ptv] == ["PTV"]
    untyped = residual_surfaces(package(""), grid(), ISO)
    assert [s.interpreted_type for s in untyped] == ["", ISOCENTER_SPHERE_TYPE]
    assert [s.name for s in residual_surfaces(None, grid(), ISO)] == [
        "50 mm sphere around the isocentre"
    ]
