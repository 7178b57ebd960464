"""Is it the same patient? Patient ID, Patient's Name and Birth Date of two CT series.

The wrong-patient check of the ingest path (issue 11, item 7):

* a series without a Patient ID (0010,0020) is refused: nothing could tell whose it is;
* the Patient ID must be the one the request names (today's words, 422);
* the MVCT and the planning CT must agree on Patient's Name (0010,0010) and Patient's Birth Date
  (0010,0030) when both series carry them (409, both values named). Names are compared without
  case and without empty trailing components (``DOE^JANE^^^`` is ``Doe^Jane``), because consoles
  and planning systems write the same name differently; birth dates must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from app.errors import ConflictError, UnprocessableError


@dataclass(frozen=True)
class PatientIdentity:
    """What a series says about its patient ("" when an element is absent)."""

    label: str  #: "MVCT" or "planning CT", for messages
    patient_id: str
    name: str
    birth_date: str  #: YYYYMMDD


def read_name_and_birth_date(path: Path) -> tuple[str, str]:
    """Patient's Name and Birth Date of one DICOM file ("" where absent)."""
    dataset = dcmread(
        path, stop_before_pixels=True, specific_tags=["PatientName", "PatientBirthDate"]
    )
    name = dataset.get("PatientName", "")
    birth_date = dataset.get("PatientBirthDate", "")
    return str(name or "").strip(), str(birth_date or "").strip()


def check_has_patient_id(identity: PatientIdentity) -> None:
    if not identity.patient_id.strip():
        raise UnprocessableError(
            f"the {identity.label} has no Patient ID (0010,0020): whose images these are cannot "
            "be checked; export the series again with the patient's ID"
        )


def check_same_patient(mvct: PatientIdentity, planning: PatientIdentity) -> None:
    """409 when the two series name different patients (see the module docstring)."""
    if mvct.patient_id and planning.patient_id and mvct.patient_id != planning.patient_id:
        _conflict("Patient ID", mvct, planning, mvct.patient_id, planning.patient_id)
    if mvct.name and planning.name and normalised_name(mvct.name) != normalised_name(planning.name):
        _conflict("Patient's Name", mvct, planning, mvct.name, planning.name)
    if mvct.birth_date and planning.birth_date and mvct.birth_date != planning.birth_date:
        _conflict("Patient's Birth Date", mvct, planning, mvct.birth_date, planning.birth_date)


def normalised_name(name: str) -> str:
    """``"DOE^JANE^^^ "`` → ``"DOE^JANE"``: upper case, components trimmed, empty tail dropped.

    >>> normalised_name("Doe^Jane^^^") == normalised_name("DOE ^ JANE")
    True
    """
    parts = [part.strip().upper() for part in name.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def _conflict(
    element: str, mvct: PatientIdentity, planning: PatientIdentity, ours: str, theirs: str
) -> None:
    raise ConflictError(
        f"the {mvct.label}'s {element} is {ours!r} but the {planning.label}'s is {theirs!r}: "
        "these may be two patients; check that the right patient and images were sent"
    )
