"""What one stored fraction gives the three-part statistics (:class:`FractionShifts`).

* ``measured``: the registration's full 6-DOF correction (``couch_correction_6dof``);
* ``proposed``: the correction the physician was shown and signs against (the engine's
  correction refitted to the fraction's dof, about the isocentre), so that ``signed − proposed``
  is the physician's adjustment and nothing else (a bore-axis translation is not one);
* ``signed``: the latest sign-off's correction (None while awaiting, and for a rejection);
* ``machine_residual``: the 6-DOF correction left after the machine's move
  (``MachineCorrection.residual``; without a profile, of a couch applying the dof exactly);
  None until the fraction is signed (what the couch applied is not known before);
* ``verification``: the 6-DOF correction of the latest verification scan with a result.

A stored result that does not read back as a registration (only hand-made test rows) gives
None, and the caller counts it.
"""

from __future__ import annotations

import datetime

from app.db import signoff_repo
from app.db.models import Fraction, RegistrationResult
from app.db.models_signoff import Decision, Signoff
from app.services.machines import machine_correction
from registration.errors import InputError
from registration.stats_parts import FractionShifts


def fraction_shifts(
    fraction: Fraction,
    result: RegistrationResult,
    signoff: Signoff | None,
    verification: Fraction | None,
) -> FractionShifts | None:
    try:
        engine = result.engine_result
    except (KeyError, TypeError, ValueError, InputError):
        return None
    machine = machine_correction(fraction, without_profile=True)
    assert machine is not None  # the fraction has its result
    signed = None
    if signoff is not None and signoff.decision != Decision.REJECTED.value:
        signed = signoff_repo.signed_correction(signoff)
    checked = None
    if verification is not None and verification.result is not None:
        try:
            checked = verification.result.engine_result.couch_correction_6dof
        except (KeyError, TypeError, ValueError, InputError):
            checked = None
    return FractionShifts(
        patient_id=fraction.patient_id,
        course_id=str(fraction.course_id),
        fraction_number=fraction.fraction_number,
        date=fraction.created_at.astimezone(datetime.UTC).date(),
        measured=engine.couch_correction_6dof,
        proposed=engine.couch_correction,
        signed=signed,
        machine_residual=None if signed is None else machine.residual,
        verification=checked,
    )
