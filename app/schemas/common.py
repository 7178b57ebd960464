"""Schemas shared by several resources."""

from __future__ import annotations

from pydantic import BaseModel, Field

from registration.couch import CouchCorrection


class ErrorOut(BaseModel):
    """Every 4xx answer: what went wrong and what to do, in words a therapist can act on."""

    detail: str = Field(examples=["MVCT: slice 12 is missing (gap of 8 mm between ...)"])


class CouchCorrectionOut(BaseModel):
    """Couch motion in IEC 61217 table axes that puts today's anatomy back on the plan."""

    lateral_mm: float
    longitudinal_mm: float
    vertical_mm: float
    pitch_deg: float
    roll_deg: float
    yaw_deg: float

    @classmethod
    def of(cls, correction: CouchCorrection) -> CouchCorrectionOut:
        return cls(**correction.as_dict())


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422)
}
