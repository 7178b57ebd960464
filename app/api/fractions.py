"""``/api/v1/fractions``: the console posts today's MVCT and gets the couch correction."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.api.deps import Console, ContextDep, Reader, SessionDep
from app.api.fraction_schemas import FractionPublic, fraction_public
from app.context import ServiceContext
from app.db import repository as repo
from app.db import signoff_repo
from app.db.models import Fraction, JobStatus
from app.deps import MAX_ID
from app.errors import NotFoundError, UnprocessableError
from app.schemas.common import ERROR_RESPONSES, ErrorOut
from app.schemas.signoff import SignoffPublic, signoff_public
from app.services import anatomy, daily_qa
from app.services.fractions import FractionRequest, Received, receive_fraction
from app.services.ingest import Upload, UploadedFiles, save_uploads, upload_folder
from app.services.residuals import residuals_of_correction
from registration.couch import CouchCorrection, Dof
from registration.geometry import LpsPoint
from registration.result import Mode

#: DICOM LO values hold no control characters (and PostgreSQL text refuses NUL)
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"
router = APIRouter(prefix="/api/v1", tags=["fractions"], responses=ERROR_RESPONSES)

PatientIdField = Annotated[
    str,
    Form(
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL_CHARS,
        description="the patient's ID (DICOM PatientID)",
    ),
]
IsocenterField = Annotated[
    str | None,
    Form(
        max_length=200,
        description="plan isocentre 'x,y,z' in mm, DICOM patient coordinates (LPS); "
        "default: the course's, else the centre of the MVCT",
    ),
]


SeriesUidField = Annotated[
    str | None,
    Form(
        max_length=64,
        pattern=r"^[0-9.]*$",
        description="SeriesInstanceUID to read when the upload holds several series",
    ),
]


RtStructField = Annotated[
    list[UploadFile] | None,
    File(description="the RT Structure Set drawn on the planning CT (one DICOM file)"),
]
RtPlanField = Annotated[
    list[UploadFile] | None,
    File(description="the RT Plan of the planning CT (one DICOM file); gives the isocentre"),
]


@dataclass(frozen=True)
class RtUploads:
    """The ``rtstruct`` and ``rtplan`` fields of a request, as sent."""

    rtstruct: Sequence[Upload] | None = None
    rtplan: Sequence[Upload] | None = None

    def save(self, work: FsPath, limit: int) -> tuple[UploadedFiles | None, UploadedFiles | None]:
        saved = [
            None if not files else save_uploads(files, work / name, label, limit)
            for files, name, label in (
                (self.rtstruct, "rtstruct", "RT Structure Set"),
                (self.rtplan, "rtplan", "RT Plan"),
            )
        ]
        return saved[0], saved[1]


QaOffsetField = Annotated[
    str | None,
    Form(
        max_length=200,
        description="QA phantom scans only (course_id of a QA course): the couch offset APPLIED "
        "to the phantom after aligning it, IEC 61217 table axes, 'lateral_mm,longitudinal_mm,"
        "vertical_mm[,pitch_deg,roll_deg,yaw_deg]'. The registration is expected to find the "
        "correction that undoes it (for translations: the negated offset).",
    ),
]


def parse_couch_offset(text: str | None) -> CouchCorrection | None:
    """'lat,long,vert' or 'lat,long,vert,pitch,roll,yaw' (mm, degrees) → a couch motion."""
    if text is None or not text.strip():
        return None
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UnprocessableError(
            f"qa_expected_offset {text!r} is not a list of numbers: send "
            "'lateral_mm,longitudinal_mm,vertical_mm' or six values with pitch, roll, yaw in °"
        ) from None
    if len(values) not in (3, 6) or not all(math.isfinite(v) for v in values):
        raise UnprocessableError(
            f"qa_expected_offset {text!r} needs 3 translations (mm) or 6 values (mm and °)"
        )
    offset = CouchCorrection(*(values + [0.0] * (6 - len(values))))
    daily_qa.check_offset(offset)
    return offset


def base_url(request: Request, ctx: ServiceContext) -> str:
    return ctx.settings.public_base_url or str(request.base_url)


def parse_isocenter(text: str | None) -> LpsPoint | None:
    if text is None or not text.strip():
        return None
    try:
        return LpsPoint.parse(text)
    except ValueError as exc:
        raise UnprocessableError(str(exc)) from None


@router.post(
    "/fractions",
    status_code=201,
    response_model=FractionPublic,
    responses={
        200: {"model": FractionPublic, "description": "this MVCT was already a fraction"},
        202: {"model": FractionPublic, "description": "accepted; poll the Location"},
        500: {"model": ErrorOut, "description": "the registration engine failed"},
    },
)
async def post_fraction(
    request: Request,
    response: Response,
    principal: Console,
    ctx: ContextDep,
    patient_id: PatientIdField,
    mvct: Annotated[
        list[UploadFile], File(description="today's MVCT: the series' DICOM files, or one .zip")
    ],
    planning: Annotated[
        list[UploadFile] | None,
        File(description="the planning CT the same way (or give course_id)"),
    ] = None,
    rtstruct: RtStructField = None,
    rtplan: RtPlanField = None,
    course_id: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None,
    isocenter: IsocenterField = None,
    fraction_number: Annotated[int | None, Form(ge=1, le=1000)] = None,
    repeat_image: Annotated[
        bool, Form(description="a repeat or verification image of fraction_number")
    ] = False,
    dof: Annotated[Dof | None, Form(description="default: the course's")] = None,
    mode: Annotated[Mode | None, Form(description="default: the course's")] = None,
    mvct_series_uid: SeriesUidField = None,
    planning_series_uid: SeriesUidField = None,
    qa_expected_offset: QaOffsetField = None,
    wait: Annotated[
        bool, Query(description="wait for the registration (false: answer 202 at once)")
    ] = True,
) -> FractionPublic:
    fraction_request = partial(
        FractionRequest,
        patient_id=patient_id,
        course_id=course_id,
        isocenter=parse_isocenter(isocenter),
        fraction_number=fraction_number,
        repeat_image=repeat_image,
        dof=dof,
        mode=mode,
        mvct_series_uid=mvct_series_uid or None,
        planning_series_uid=planning_series_uid or None,
    )
    qa_offset = parse_couch_offset(qa_expected_offset)
    if qa_offset is not None:
        await run_in_threadpool(_check_qa_course, ctx, course_id)
    received = await run_in_threadpool(
        _save_and_receive,
        ctx,
        mvct,
        planning or None,
        RtUploads(rtstruct or None, rtplan or None),
        fraction_request,
        principal.actor,
    )
    if qa_offset is not None and received.created:
        await run_in_threadpool(
            _record_offset, ctx, received.fraction_id, qa_offset, principal.actor
        )
    return await answer_received(
        ctx, request, response, received, wait=wait, failed="the registration failed"
    )


async def answer_received(
    ctx: ServiceContext,
    request: Request,
    response: Response,
    received: Received,
    *,
    wait: bool,
    failed: str,
) -> FractionPublic:
    """Queue the registration of an upload just received and answer with its fraction.

    201 when registered, 200 when this MVCT had been received before, 202 with a Location to
    poll while it runs (``wait`` false, or past the wait timeout); a failed registration is
    its error status (500 when it has none) with the job's words, else ``failed``.
    """
    if received.created and ctx.jobs is not None:
        ctx.jobs.enqueue(received.job_id)
    if wait and ctx.jobs is not None:
        await ctx.jobs.wait_finished(received.job_id, ctx.settings.wait_timeout_s)
    view, error_status = await run_in_threadpool(
        _load, ctx, received.fraction_id, base_url(request, ctx)
    )
    location = f"/api/v1/fractions/{view.id}"
    if view.status == JobStatus.FAILED.value:
        raise HTTPException(
            status_code=error_status or 500,
            detail=view.error or failed,
            headers={"Location": location},
        )
    if view.status != JobStatus.DONE.value:
        response.status_code = 202
        response.headers["Location"] = location
    elif not received.created:
        response.status_code = 200
    return view


@router.get("/fractions/{fraction_id}", response_model=FractionPublic)
def get_fraction(
    fraction_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    _: Reader,
) -> FractionPublic:
    fraction = repo.fraction_by_id(session, fraction_id)
    if fraction is None:
        raise NotFoundError(f"fraction {fraction_id} does not exist")
    return fraction_view(ctx, session, fraction, base_url(request, ctx))


def fraction_view(
    ctx: ServiceContext, session: Session, fraction: Fraction, base: str
) -> FractionPublic:
    """The fraction's public view with its signature, the residuals of the signed correction,
    anatomy figures and alert, QA verdict."""
    qa = daily_qa.fraction_qa(session, fraction)
    return fraction_public(
        fraction,
        base,
        current_signoff(session, fraction.id),
        signed_residuals(ctx, session, fraction),
        anatomy=None if qa is not None else anatomy.fraction_anatomy(session, fraction),
        anatomy_note=anatomy.figures_note(session, fraction.id),
        qa=qa,
        verification=repo.verification_of(session, fraction.id),
    )


def _record_offset(
    ctx: ServiceContext, fraction_id: int, offset: CouchCorrection, actor: str
) -> None:
    with ctx.writer() as session:
        daily_qa.record_offset(session, fraction_id, offset, actor)


def _check_qa_course(ctx: ServiceContext, course_id: int | None) -> None:
    with ctx.sessions() as session:
        if course_id is None or daily_qa.qa_course_of(session, course_id) is None:
            raise UnprocessableError(
                "qa_expected_offset is only for QA phantom scans: send the course_id of the "
                "machine's QA course (see /api/v1/qa/machines)"
            )


def current_signoff(session: Session, fraction_id: int) -> SignoffPublic | None:
    latest = signoff_repo.latest_signoffs(session, [fraction_id]).get(fraction_id)
    if latest is None:
        return None
    return signoff_public(latest, signoff_repo.signer_of(session, latest))


def signed_residuals(
    ctx: ServiceContext, session: Session, fraction: Fraction
) -> list[dict[str, Any]] | None:
    """Residuals of the signed correction (None until a correction is signed)."""
    latest = signoff_repo.latest_signoffs(session, [fraction.id]).get(fraction.id)
    correction = None if latest is None else signoff_repo.signed_correction(latest)
    if correction is None:
        return None
    assessment = residuals_of_correction(ctx.store, session, fraction, correction)
    return None if assessment is None else assessment.residuals


def _save_and_receive(
    ctx: ServiceContext,
    mvct: Sequence[Upload],
    planning: Sequence[Upload] | None,
    rt: RtUploads,
    request: Callable[..., FractionRequest],
    actor: str,
) -> Received:
    """Save the uploads to a private folder, then hand the saved files to the use case."""
    limit = 4 * ctx.settings.max_upload_bytes
    with upload_folder(ctx.store) as work:
        saved_mvct = save_uploads(mvct, work / "mvct", "MVCT", limit)
        saved_planning = (
            None
            if not planning
            else save_uploads(planning, work / "planning", "planning CT", limit)
        )
        rtstruct, rtplan = rt.save(work, limit)
        return receive_fraction(
            ctx,
            request(mvct=saved_mvct, planning=saved_planning, rtstruct=rtstruct, rtplan=rtplan),
            actor,
        )


def _load(ctx: ServiceContext, fraction_id: int, base: str) -> tuple[FractionPublic, int | None]:
    with ctx.sessions() as session:
        fraction = repo.fraction_by_id(session, fraction_id)
        if fraction is None:  # pragma: no cover - it was committed before
            raise NotFoundError(f"fraction {fraction_id} does not exist")
        view = fraction_view(ctx, session, fraction, base)
        return view, fraction.job.error_status
