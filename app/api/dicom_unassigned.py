"""``/api/v1/dicom/unassigned``: received series held for a physicist, and the decision on each.

A series is held when no rule identified it (or it is a new planning CT of a patient who has a
course, not sent by a planning CT sender); see :mod:`app.dicom.unassigned`. Physicists only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import ContextDep, Principal, SessionDep, require
from app.api.fractions import NO_CONTROL_CHARS
from app.deps import MAX_ID
from app.dicom import unassigned
from app.dicom.service import DicomService
from app.permissions import Action
from app.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1/dicom", tags=["dicom"], responses=ERROR_RESPONSES)

Physicist = Annotated[Principal, Depends(require(Action.ASSIGN_DICOM_SERIES))]
SeriesId = Annotated[int, Path(ge=1, le=MAX_ID)]


class HeldSeriesOut(BaseModel):
    series_id: int
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    series_description: str
    modality: str = Field(description="CT (the image series the receivers accept)")
    source: str = Field(description="c-store or stow-rs")
    sender: str = Field(description="calling AE title, or the API key's name")
    n_instances: int
    extent_mm: float = Field(description="z extent of the slice positions received")
    reason: str = Field(description="why the series is held")
    received_at: datetime = Field(description="when its last instance arrived")
    held_since: datetime
    patient_course_ids: list[int] = Field(description="the patient's courses, oldest first")


class HeldSeriesList(BaseModel):
    series: list[HeldSeriesOut]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    as_: Literal["planning", "mvct"] = Field(
        alias="as", description="planning: a new course's planning CT; mvct: a fraction"
    )
    course_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="the course of the MVCT (as=mvct, and only then)"
    )
    reason: str = Field(default="", max_length=unassigned.MAX_NOTE_CHARS, pattern=NO_CONTROL_CHARS)


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1, max_length=unassigned.MAX_NOTE_CHARS, pattern=NO_CONTROL_CHARS
    )


class DecisionOut(BaseModel):
    series_id: int
    resolution: str = Field(description="planning, mvct or discarded")
    course_id: int | None = None
    fraction_id: int | None = None


@router.get("/unassigned", response_model=HeldSeriesList)
def list_unassigned(session: SessionDep, _: Physicist) -> HeldSeriesList:
    return HeldSeriesList(
        series=[
            HeldSeriesOut(
                **{k: v for k, v in vars(h).items() if k != "patient_course_ids"},
                patient_course_ids=list(h.patient_course_ids),
            )
            for h in unassigned.list_held(session)
        ]
    )


@router.post("/unassigned/{series_id}/assign", response_model=DecisionOut)
def assign_series(
    series_id: SeriesId, body: AssignIn, request: Request, principal: Physicist
) -> DecisionOut:
    """as=planning: the planning CT of a new course of its patient; as=mvct with course_id: a
    fraction of that course. Each series is decided once (409 after)."""
    dicom: DicomService = request.app.state.dicom  # checks course_id, as the page's route does
    decision = dicom.assign_held(series_id, body.as_, body.course_id, principal.actor, body.reason)
    return DecisionOut(**vars(decision))


@router.post("/unassigned/{series_id}/discard", response_model=DecisionOut)
def discard_series(
    series_id: SeriesId, body: DiscardIn, ctx: ContextDep, principal: Physicist
) -> DecisionOut:
    return DecisionOut(**vars(unassigned.discard(ctx, series_id, principal.actor, body.reason)))
