"""``POST /api/v1/fractions/{id}/verification``: the MVCT taken after the couch move.

Its registration is the residual set-up error of the fraction (see
:mod:`app.services.verification`). The answer is the verification scan as a fraction
(``verifies_fraction_id`` set); the verified fraction shows it under ``verification``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.api.deps import Console, ContextDep
from app.api.fraction_schemas import FractionPublic
from app.api.fractions import answer_received
from app.context import ServiceContext
from app.deps import MAX_ID
from app.schemas.common import ERROR_RESPONSES
from app.services.fractions import Received
from app.services.ingest import Upload, save_uploads, upload_folder
from app.services.verification import receive_verification

router = APIRouter(prefix="/api/v1", tags=["fractions"], responses=ERROR_RESPONSES)


@router.post(
    "/fractions/{fraction_id}/verification",
    status_code=201,
    response_model=FractionPublic,
    responses={
        200: {"model": FractionPublic, "description": "this MVCT was already this verification"},
        202: {"model": FractionPublic, "description": "accepted; poll the Location"},
    },
)
async def post_verification(
    fraction_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    request: Request,
    response: Response,
    principal: Console,
    ctx: ContextDep,
    mvct: Annotated[
        list[UploadFile],
        File(description="the MVCT taken after the couch move: DICOM files, or one .zip"),
    ],
    wait: Annotated[bool, Query(description="wait for the registration")] = True,
) -> FractionPublic:
    received = await run_in_threadpool(_save_and_receive, ctx, fraction_id, mvct, principal.actor)
    failed = "the registration of the verification scan failed"
    return await answer_received(ctx, request, response, received, wait=wait, failed=failed)


def _save_and_receive(
    ctx: ServiceContext, fraction_id: int, mvct: Sequence[Upload], actor: str
) -> Received:
    with upload_folder(ctx.store) as work:
        saved = save_uploads(mvct, work / "mvct", "MVCT", 4 * ctx.settings.max_upload_bytes)
        return receive_verification(ctx, fraction_id, saved, actor)
