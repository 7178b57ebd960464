"""``/dicomweb/studies``: DICOMweb STOW-RS, for consoles and archives that send over HTTP.

Authentication: the console's API key in ``X-API-Key`` (role console). Orthanc sends it with
``"HttpHeaders": {"X-API-Key": "..."}`` in its ``DicomWeb.Servers`` entry (README "DICOM").
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import Console, ContextDep
from app.dicom.acceptance import Received
from app.dicom.service import DicomService
from app.dicom.stow import DICOM_JSON, boundary_of, read_parts, store_parts, stow_response
from app.schemas.common import ERROR_RESPONSES, ErrorOut

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_STORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{code: spec for code, spec in ERROR_RESPONSES.items() if code != 409},
    200: {"description": "every instance stored", "content": {DICOM_JSON: {}}},
    202: {
        "description": "some instances stored, others failed or stored with a warning",
        "content": {DICOM_JSON: {}},
    },
    409: {"description": "no instance stored (see FailedSOPSequence)", "content": {DICOM_JSON: {}}},
    415: {"model": ErrorOut, "description": 'not multipart/related; type="application/dicom"'},
}
_DESCRIPTION = """
STOW-RS (DICOM PS3.18 §10.5). Body: `multipart/related; type="application/dicom"; boundary=...`,
one DICOM file per part; CT Image Storage only. Answer: `application/dicom+json` with
ReferencedSOPSequence and FailedSOPSequence (Failure Reason 0xC000 unreadable, 0x0122 not CT
Image Storage, 0xA900 not CT or another study, 0xC122 transfer syntax without a decoder, 0xA700
not written: larger than MVCT_GUIDE_DICOM_MAX_DATASET_MB, inbox backlog beyond
MVCT_GUIDE_DICOM_INBOX_QUOTA_MB, or less than MVCT_GUIDE_DICOM_MIN_FREE_MB free disk). Complete
series become courses (planning CT) and fractions (MVCT) after a quiet time, as if posted to
`/api/v1/fractions`; a series no rule identifies is held for a physicist.
"""

StudyUid = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]


@router.post(
    "/studies",
    response_class=Response,
    responses=_STORE_RESPONSES,
    description=_DESCRIPTION,
    summary="Store instances (STOW-RS)",
)
async def store_instances(request: Request, principal: Console, ctx: ContextDep) -> Response:
    return await _store(request, principal.name, None)


@router.post(
    "/studies/{study}",
    response_class=Response,
    responses=_STORE_RESPONSES,
    description=_DESCRIPTION,
    summary="Store instances of one study (STOW-RS)",
)
async def store_study_instances(
    study: StudyUid, request: Request, principal: Console, ctx: ContextDep
) -> Response:
    return await _store(request, principal.name, study)


async def _store(request: Request, sender: str, study: str | None) -> Response:
    dicom: DicomService = request.app.state.dicom
    boundary = boundary_of(request.headers.get("content-type"))
    key = object()
    dicom.in_flight.begin(key)
    try:
        parts = await read_parts(request.stream(), boundary, dicom.inbox, dicom.quota)
        received = Received(source="stow-rs", sender=sender, expected_study_uid=study)
        outcomes = await run_in_threadpool(
            store_parts,
            parts,
            dicom.inbox,
            dicom.ctx.writer,
            received,
            lambda uid: dicom.in_flight.add(key, uid),
            dicom.quota,
        )
    finally:
        dicom.in_flight.end(key)
        dicom.grouper.wake()
    status, body = stow_response(outcomes)
    return Response(json.dumps(body), status_code=status, media_type=DICOM_JSON)
