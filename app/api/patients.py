"""``/api/v1/patients/{patient_id}/fractions``: the shift log of one patient."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.api.deps import ContextDep, Reader, SessionDep
from app.api.fraction_schemas import ShiftLog, shift_log_entry
from app.api.fractions import NO_CONTROL_CHARS, base_url
from app.db import repository as repo
from app.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["patients"], responses=ERROR_RESPONSES)


@router.get("/patients/{patient_id}/fractions", response_model=ShiftLog)
def shift_log(
    patient_id: Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARS)],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    _: Reader,
) -> ShiftLog:
    """Every fraction of the patient, oldest first (an unknown patient has an empty log)."""
    base = base_url(request, ctx)
    fractions = repo.fractions_of_patient(session, patient_id)
    return ShiftLog(patient_id=patient_id, fractions=[shift_log_entry(f, base) for f in fractions])
