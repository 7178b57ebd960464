"""``/api/v1/fractions/{id}/registration.dcm``: the registration as a DICOM REG object."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ContextDep, Reader
from app.deps import MAX_ID
from app.dicom import RegExportError
from app.dicom.reg_export import reg_for_fraction
from app.errors import ConflictError
from app.schemas.common import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["fractions"], responses=ERROR_RESPONSES)

_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Spatial Registration object (SOP Class 1.2.840.10008.5.1.4.1.1.66.1)",
        "content": {"application/dicom": {}},
    }
}
_DESCRIPTION = """
The fraction's registration as a DICOM Spatial Registration object (modality REG): the planning
CT's frame with the identity, the MVCT's frame with the RIGID matrix that maps MVCT points to
planning CT points (the inverse of `planning_to_daily_lps`, as PS3.3 C.20.2.1.1 defines the
direction), both referencing their images. Once signed off it carries the sign-off (an adjusted
correction replaces the engine's matrix). 409 while the fraction is not registered, or when its
registration was rejected.
"""


@router.get(
    "/fractions/{fraction_id}/registration.dcm",
    response_class=Response,
    responses=_OK,
    description=_DESCRIPTION,
    summary="Registration as DICOM REG",
)
async def get_registration_dcm(
    fraction_id: Annotated[int, Path(ge=1, le=MAX_ID)], ctx: ContextDep, _: Reader
) -> Response:
    try:
        reg = await run_in_threadpool(reg_for_fraction, ctx, fraction_id)
    except RegExportError as exc:
        raise ConflictError(str(exc)) from None
    return Response(
        reg.data,
        media_type="application/dicom",
        headers={"Content-Disposition": f'attachment; filename="fraction-{fraction_id}-REG.dcm"'},
    )
