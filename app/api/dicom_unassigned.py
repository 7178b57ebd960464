"""``/api/v1/dicom/unassigned``: received series held for a physicist, and the decision on each.

A series is held when no rule identified it (or it is a new planning CT of a patient who has a
course, not sent by a planning CT sender); see :mod:`app.dicom.unassigned`. Physicists only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    source: str = Field(description="c-store or stow-rs")
    sender: str = Field(description="calling AE title, or the API key's name")
    n_instances: int
    extent_mm: float = Field(description="z extent of the slice positions received")
    reason: str = Field(description="why the series is held")
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
        default=None, ge=1, le=MAX_ID, description="the course of the MVCT (as=mvct only)"
    )
    reason: str = Field(default="", max_length=1000, pattern=NO_CONTROL_CHARS)

    @model_validator(mode="after")
    def _course_for_an_mvct(self) -> AssignIn:
        if (self.as_ == "mvct") != (self.course_id is not None):
            raise ValueError("course_id is needed with as=mvct, and only then")
        return self


class DiscardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, pattern=NO_CONTROL_CHARS)


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
    series_id: SeriesId, body: AssignIn, request: Request, ctx: ContextDep, principal: Physicist
) -> DecisionOut:
    dicom: DicomService = request.app.state.dicom
    if body.as_ == "planning":
        decision = unassigned.assign_planning(
            ctx, dicom.inbox, series_id, principal.actor, body.reason
        )
    else:
        assert body.course_id is not None
        decision = unassigned.assign_mvct(
            ctx, dicom.inbox, series_id, body.course_id, principal.actor, body.reason
        )
    dicom.grouper.wake()  # MVCTs waiting for a course may go now
    return DecisionOut(**vars(decision))


@router.post("/unassigned/{series_id}/discard", response_model=DecisionOut)
def discard_series(
    series_id: SeriesId, body: DiscardIn, ctx: ContextDep, principal: Physicist
) -> DecisionOut:
    return DecisionOut(**vars(unassigned.discard(ctx, series_id, principal.actor, body.reason)))
