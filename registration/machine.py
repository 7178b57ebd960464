"""Treatment machine profiles: which corrections a machine applies, how, and within which limits.

A :class:`MachineProfile` describes one treatment machine (or a family of them) for the couch
correction of :mod:`registration.machine_correction`:

* per axis (IEC 61217 table axes: lateral X, longitudinal Y, vertical Z in mm; pitch about X,
  roll about Y, yaw about Z in degrees) the :class:`Actuator` that applies it — a couch
  translation, a couch rotation, the TomoTherapy gantry start-angle offset (roll only), or
  nothing — whether a therapist applies it by hand or the machine moves automatically
  (:class:`Application`), and a symmetric **correction limit**: the largest magnitude of one
  correction on that axis (a relative move, not an absolute couch position);
* a **no-move tolerance** (mm and degrees): when every applied axis is within it, no move is made;
* the names by which it is recognised: the daily MVCT's StationName (0008,1010) or the plan's
  TreatmentMachineName (300A,00B2), compared without case and surrounding spaces.

``dof`` is derived from the axes a profile applies (3: translations only; 4: translations and
roll; 6: all six); other combinations are refused because no correction refit exists for them.

Shipped profiles (:data:`SHIPPED_PROFILES`) and where their numbers come from
-----------------------------------------------------------------------------
* **TomoTherapy Hi·Art** — translations and roll; roll by the gantry start angle: "corrections
  for roll are ... implemented by rotating the delivery pattern about the central axis of the
  treatment unit" (Laub S, Snyder M, Burmeister J, "Technical evaluation of TomoTherapy automatic
  roll correction", JACMP 2015;16(3):80–89); pitch and yaw are measured but not correctable
  (Langen KM et al., AAPM TG-148, Med Phys 2010;37:4817; DOMAIN.md). The lateral couch move is
  made by hand on Hi·Art, longitudinal and vertical automatically *(unverified: from memory of
  the Hi·Art couch, check against the site's machine)*. Limits: ±25 mm lateral
  *(unverified, the manual lateral range of the Hi·Art couch as commonly quoted)*; ±100 mm
  longitudinal and vertical and ±5° roll are **local policy** (a correction that large means
  re-setting the patient up), not vendor limits.
* **Radixact** — as Hi·Art, with all three translations automatic *(unverified)*, same limits
  and the same policy caveats.
* **Generic 6-DOF couch** — three translations and three rotations by the couch, automatic.
  ±3° pitch, roll and yaw is the rotation range of common 6-DOF couch tops (e.g. Varian
  PerfectPitch, Elekta HexaPOD evo) *(unverified against the vendor datasheets here)*; ±100 mm
  translations are local policy.
* **3-DOF couch** — translations only, automatic; ±100 mm local policy.
* Tolerances: 0.5 mm and 0.3° for every profile, local policy below the couch accuracy of
  AAPM TG-142 (1 mm / 0.5°) and below the ~0.3° roll that Laub et al. found dosimetrically
  significant 7 cm off axis.

Every number is a default a physicist is expected to review; profiles round-trip through JSON
(:meth:`MachineProfile.to_dict` / :meth:`MachineProfile.from_dict`) for storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum, unique
from typing import Any, Final

from registration.couch import Dof
from registration.errors import InputError


class MachineProfileError(InputError):
    """A machine profile is inconsistent or cannot be read; the message names the value."""


@unique
class MachineAxis(StrEnum):
    """The six correction axes, IEC 61217 table axes."""

    LATERAL = "lateral"  #: X, mm
    LONGITUDINAL = "longitudinal"  #: Y, mm
    VERTICAL = "vertical"  #: Z, mm
    PITCH = "pitch"  #: about X, degrees
    ROLL = "roll"  #: about Y, degrees
    YAW = "yaw"  #: about Z, degrees

    @property
    def is_rotation(self) -> bool:
        return self in (MachineAxis.PITCH, MachineAxis.ROLL, MachineAxis.YAW)

    @property
    def unit(self) -> str:
        return "deg" if self.is_rotation else "mm"


TRANSLATION_AXES: Final = (MachineAxis.LATERAL, MachineAxis.LONGITUDINAL, MachineAxis.VERTICAL)
ROTATION_AXES: Final = (MachineAxis.PITCH, MachineAxis.ROLL, MachineAxis.YAW)


@unique
class Actuator(StrEnum):
    """What applies a correction on one axis."""

    COUCH_TRANSLATION = "couch_translation"  #: the couch top moves along the axis
    COUCH_ROTATION = "couch_rotation"  #: the couch top rotates about the room isocentre
    #: TomoTherapy: the delivery is rotated about the bore axis (IEC Y through the machine
    #: isocentre) by offsetting the gantry start angle; roll only
    GANTRY_START_ANGLE = "gantry_start_angle"
    NOT_APPLIED = "not_applied"  #: measured and reported, never corrected


@unique
class Application(StrEnum):
    """Who makes the move."""

    AUTOMATIC = "automatic"  #: the machine moves when the therapist confirms
    MANUAL = "manual"  #: the therapist moves the axis by hand


@dataclass(frozen=True, slots=True)
class AxisCapability:
    """How one axis is corrected. ``limit`` is in the axis unit (mm or degrees), symmetric.

    ``limit`` is ``math.inf`` for no limit and is ignored for an axis that is not applied.
    """

    actuator: Actuator
    application: Application = Application.AUTOMATIC
    limit: float = math.inf

    @property
    def applied(self) -> bool:
        return self.actuator is not Actuator.NOT_APPLIED


_ALLOWED_ACTUATORS: Final = {
    MachineAxis.LATERAL: {Actuator.COUCH_TRANSLATION},
    MachineAxis.LONGITUDINAL: {Actuator.COUCH_TRANSLATION},
    MachineAxis.VERTICAL: {Actuator.COUCH_TRANSLATION},
    MachineAxis.PITCH: {Actuator.COUCH_ROTATION, Actuator.NOT_APPLIED},
    MachineAxis.ROLL: {Actuator.COUCH_ROTATION, Actuator.GANTRY_START_ANGLE, Actuator.NOT_APPLIED},
    MachineAxis.YAW: {Actuator.COUCH_ROTATION, Actuator.NOT_APPLIED},
}


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """One treatment machine's correction capabilities (see the module docstring).

    Raises :class:`MachineProfileError` when an axis has an actuator it cannot have (a
    translation by gantry angle, a pitch by gantry), a limit that is not positive, a negative
    tolerance, or a set of applied rotations other than none, roll only, or all three.
    """

    name: str
    lateral: AxisCapability
    longitudinal: AxisCapability
    vertical: AxisCapability
    pitch: AxisCapability
    roll: AxisCapability
    yaw: AxisCapability
    no_move_tolerance_mm: float = 0.5
    no_move_tolerance_deg: float = 0.3
    #: StationName / TreatmentMachineName values this profile matches (case-insensitive)
    machine_names: tuple[str, ...] = ()
    #: where the numbers come from, for the physicist reviewing the profile
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise MachineProfileError("a machine profile needs a non-empty name")
        for axis in MachineAxis:
            capability = self.axis(axis)
            if capability.actuator not in _ALLOWED_ACTUATORS[axis]:
                allowed = ", ".join(sorted(a.value for a in _ALLOWED_ACTUATORS[axis]))
                raise MachineProfileError(
                    f"profile {self.name!r}: {axis} cannot be applied by "
                    f"{capability.actuator.value!r}; allowed: {allowed}."
                )
            if not (capability.limit > 0.0):  # also refuses NaN
                raise MachineProfileError(
                    f"profile {self.name!r}: {axis} limit {capability.limit!r} {axis.unit} "
                    "must be a positive number (math.inf for no limit)."
                )
        for label, value in (
            ("no_move_tolerance_mm", self.no_move_tolerance_mm),
            ("no_move_tolerance_deg", self.no_move_tolerance_deg),
        ):
            if not (math.isfinite(value) and value >= 0.0):
                raise MachineProfileError(
                    f"profile {self.name!r}: {label}={value!r} must be a finite number ≥ 0."
                )
        applied = tuple(axis for axis in ROTATION_AXES if self.axis(axis).applied)
        if applied not in ((), (MachineAxis.ROLL,), ROTATION_AXES):
            names = ", ".join(a.value for a in applied)
            raise MachineProfileError(
                f"profile {self.name!r} applies the rotations ({names}); supported are none, "
                "roll only, or pitch, roll and yaw together."
            )

    def axis(self, axis: MachineAxis) -> AxisCapability:
        capability: AxisCapability = getattr(self, axis.value)
        return capability

    @property
    def dof(self) -> Dof:
        """Degrees of freedom the machine corrects, from the axes it applies."""
        n_rotations = sum(self.axis(a).applied for a in ROTATION_AXES)
        return {0: Dof.TRANSLATIONS, 1: Dof.TRANSLATIONS_ROLL, 3: Dof.SIX}[n_rotations]

    @property
    def applied_axes(self) -> tuple[MachineAxis, ...]:
        return tuple(axis for axis in MachineAxis if self.axis(axis).applied)

    @property
    def manual_axes(self) -> tuple[MachineAxis, ...]:
        """The applied axes a therapist moves by hand."""
        return tuple(
            axis for axis in self.applied_axes if self.axis(axis).application is Application.MANUAL
        )

    @property
    def rolls_about_bore_axis(self) -> bool:
        return self.roll.actuator is Actuator.GANTRY_START_ANGLE

    def matches(self, machine_name: str | None) -> bool:
        """True when ``machine_name`` (StationName or TreatmentMachineName) names this machine."""
        wanted = (machine_name or "").strip().casefold()
        return bool(wanted) and any(n.strip().casefold() == wanted for n in self.machine_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: infinite limits are written as ``None``."""
        return {
            "name": self.name,
            "machine_names": list(self.machine_names),
            "no_move_tolerance_mm": self.no_move_tolerance_mm,
            "no_move_tolerance_deg": self.no_move_tolerance_deg,
            "source": self.source,
            "axes": {
                axis.value: {
                    "actuator": self.axis(axis).actuator.value,
                    "application": self.axis(axis).application.value,
                    f"limit_{axis.unit}": (
                        None if math.isinf(self.axis(axis).limit) else self.axis(axis).limit
                    ),
                }
                for axis in MachineAxis
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineProfile:
        """Read :meth:`to_dict`'s form; raise :class:`MachineProfileError` naming a bad field."""
        try:
            name = str(data["name"])
            axes_data = data["axes"]
            capabilities = {}
            for axis in MachineAxis:
                entry = axes_data[axis.value]
                limit = entry.get(f"limit_{axis.unit}")
                capabilities[axis.value] = AxisCapability(
                    actuator=Actuator(entry["actuator"]),
                    application=Application(entry.get("application", "automatic")),
                    limit=math.inf if limit is None else float(limit),
                )
            return cls(
                name=name,
                no_move_tolerance_mm=float(data.get("no_move_tolerance_mm", 0.5)),
                no_move_tolerance_deg=float(data.get("no_move_tolerance_deg", 0.3)),
                machine_names=tuple(str(n) for n in data.get("machine_names", ())),
                source=str(data.get("source", "")),
                **capabilities,
            )
        except MachineProfileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MachineProfileError(
                f"machine profile {data.get('name', '?') if isinstance(data, dict) else data!r} "
                f"cannot be read: {type(exc).__name__}: {exc}. Expected the form of "
                "MachineProfile.to_dict()."
            ) from None


def _translation(
    limit_mm: float, application: Application = Application.AUTOMATIC
) -> AxisCapability:
    return AxisCapability(Actuator.COUCH_TRANSLATION, application, limit_mm)


_NOT_APPLIED: Final = AxisCapability(Actuator.NOT_APPLIED)
_POLICY_MM: Final = 100.0

TOMOTHERAPY_HI_ART: Final = MachineProfile(
    name="TomoTherapy Hi·Art",
    lateral=_translation(25.0, Application.MANUAL),
    longitudinal=_translation(_POLICY_MM),
    vertical=_translation(_POLICY_MM),
    pitch=_NOT_APPLIED,
    roll=AxisCapability(Actuator.GANTRY_START_ANGLE, Application.AUTOMATIC, 5.0),
    yaw=_NOT_APPLIED,
    machine_names=("Hi-Art", "HiArt", "TomoTherapy Hi-Art", "TomoTherapy Hi·Art"),
    source=(
        "Roll by gantry start angle about the bore axis: Laub et al., JACMP 2015;16(3):80. Pitch, "
        "yaw not correctable: AAPM TG-148 (Med Phys 2010;37:4817). Manual lateral, ±25 mm: "
        "unverified. ±100 mm, ±5° roll, 0.5 mm / 0.3° tolerance: local policy."
    ),
)

RADIXACT: Final = MachineProfile(
    name="Radixact",
    lateral=_translation(25.0),
    longitudinal=_translation(_POLICY_MM),
    vertical=_translation(_POLICY_MM),
    pitch=_NOT_APPLIED,
    roll=AxisCapability(Actuator.GANTRY_START_ANGLE, Application.AUTOMATIC, 5.0),
    yaw=_NOT_APPLIED,
    machine_names=("Radixact",),
    source=(
        "As TomoTherapy Hi·Art (Laub et al. 2015; TG-148); automatic lateral couch and ±25 mm: "
        "unverified. ±100 mm, ±5° roll, 0.5 mm / 0.3° tolerance: local policy."
    ),
)

GENERIC_6DOF_COUCH: Final = MachineProfile(
    name="6-DOF couch",
    lateral=_translation(_POLICY_MM),
    longitudinal=_translation(_POLICY_MM),
    vertical=_translation(_POLICY_MM),
    pitch=AxisCapability(Actuator.COUCH_ROTATION, Application.AUTOMATIC, 3.0),
    roll=AxisCapability(Actuator.COUCH_ROTATION, Application.AUTOMATIC, 3.0),
    yaw=AxisCapability(Actuator.COUCH_ROTATION, Application.AUTOMATIC, 3.0),
    source=(
        "±3° pitch/roll/yaw: typical 6-DOF couch tops (Varian PerfectPitch, Elekta HexaPOD evo), "
        "unverified against datasheets. ±100 mm, 0.5 mm / 0.3° tolerance: local policy."
    ),
)

THREE_DOF_COUCH: Final = MachineProfile(
    name="3-DOF couch",
    lateral=_translation(_POLICY_MM),
    longitudinal=_translation(_POLICY_MM),
    vertical=_translation(_POLICY_MM),
    pitch=_NOT_APPLIED,
    roll=_NOT_APPLIED,
    yaw=_NOT_APPLIED,
    source="Translations only. ±100 mm and 0.5 mm tolerance: local policy.",
)

SHIPPED_PROFILES: Final = (TOMOTHERAPY_HI_ART, RADIXACT, GENERIC_6DOF_COUCH, THREE_DOF_COUCH)


def profile_for_machine(
    profiles: tuple[MachineProfile, ...],
    station_name: str | None = None,
    treatment_machine_name: str | None = None,
) -> MachineProfile | None:
    """The first profile matching the MVCT's StationName, else the plan's TreatmentMachineName.

    None when neither matches: the caller must then use the course's profile or ask.
    """
    for name in (station_name, treatment_machine_name):
        for profile in profiles:
            if profile.matches(name):
                return profile
    return None
