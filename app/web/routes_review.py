"""The review page of one fraction, its volumes, and signing from the page."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from app.context import ServiceContext
from app.db import repository as repo
from app.deps import MAX_ID, ContextDep, client_address
from app.errors import NotFoundError, ServiceError
from app.permissions import Action
from app.schemas.signoff import MAX_ANGLE_DEG, MAX_SHIFT_MM, signoff_public
from app.services import anatomy
from app.services.signoff import SignRequest, sign
from app.web import sessions
from app.web.deps import (
    SECURITY_HEADERS,
    CouchAxisForm,
    DataViewer,
    PageViewer,
    WebRefusalError,
    WebSettingsDep,
    call_service,
    can_sign,
    check_form,
    page,
)
from app.web.review import review_context
from app.web.review_structures import structures_for_review, structures_path
from registration.couch import CouchCorrection

router = APIRouter(include_in_schema=False)
FractionId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _context(ctx: ServiceContext, fraction_id: int) -> dict[str, Any]:
    with ctx.sessions() as db:
        fraction = repo.fraction_by_id(db, fraction_id)
        if fraction is None:
            raise WebRefusalError(404, f"fraction {fraction_id} does not exist")
        return review_context(db, ctx.store, fraction)


@router.get("/review/{fraction_id}")
async def review_page(
    request: Request, fraction_id: FractionId, ctx: ContextDep, viewer: PageViewer
) -> Response:
    context = await run_in_threadpool(_context, ctx, fraction_id)
    request.app.state.review_volumes.prefetch(ctx, [fraction_id])  # starts before the page asks
    context.update(
        viewer=viewer.user,
        can_sign=can_sign(viewer),
        csrf_token=sessions.csrf_token(viewer),
        config_json=json.dumps({**context["config"], "canSign": can_sign(viewer)}).replace(
            "<", "\\u003c"
        ),
    )
    return page(request, "review.html", context)


@router.get("/review/{fraction_id}/volumes")
async def review_volumes(
    request: Request, fraction_id: FractionId, ctx: ContextDep, _: DataViewer
) -> Response:
    """The grid of the fraction's review volumes and where to fetch them (built if needed)."""
    volumes = request.app.state.review_volumes
    try:
        grid = await run_in_threadpool(volumes.ensure, ctx, fraction_id)
    except ServiceError as exc:
        raise WebRefusalError(exc.status_code, exc.detail) from None
    except Exception as exc:  # unreadable stored images: say so, never a stack trace
        raise WebRefusalError(
            422, f"the images of fraction {fraction_id} cannot be shown: {exc}"
        ) from None
    key = grid["key"]
    grid["urls"] = {
        name: f"/review/{fraction_id}/volumes/{key}/{name}.i16" for name in ("planning", "mvct")
    }
    return JSONResponse(grid, headers=SECURITY_HEADERS)


@router.get("/review/{fraction_id}/volumes/{key}/{name}.i16")
def review_volume_file(
    request: Request, fraction_id: FractionId, key: str, name: str, _: DataViewer
) -> Response:
    """gzip-compressed int16 voxels; the URL names its content, so browsers may keep it."""
    path = request.app.state.review_volumes.volume_path(key, name)
    if path is None or not key.startswith(f"{fraction_id}-"):
        raise WebRefusalError(404, "these review images are no longer prepared: reload the page")
    headers = {
        **SECURITY_HEADERS,
        "Content-Encoding": "gzip",
        "Cache-Control": "private, max-age=86400, immutable",
    }
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


@router.get("/review/{fraction_id}/structures")
async def review_structures(
    request: Request, fraction_id: FractionId, ctx: ContextDep, _: DataViewer
) -> Response:
    """The course's structures on the fraction's review grid (names, colours, mask file)."""
    volumes = request.app.state.review_volumes
    try:
        body = await run_in_threadpool(structures_for_review, ctx, volumes, fraction_id)
    except ServiceError as exc:
        raise WebRefusalError(exc.status_code, exc.detail) from None
    except Exception as exc:  # unreadable stored objects: say so, never a stack trace
        raise WebRefusalError(
            422, f"the structures of fraction {fraction_id} cannot be shown: {exc}"
        ) from None
    return JSONResponse(body, headers=SECURITY_HEADERS)


@router.get("/review/{fraction_id}/volumes/{key}/{name}.u32")
def review_structures_file(
    request: Request, fraction_id: FractionId, key: str, name: str, _: DataViewer
) -> Response:
    """gzip-compressed uint32 structure bits per voxel (see app/web/review_structures.py)."""
    path = structures_path(request.app.state.review_volumes, key, name)
    if path is None or not key.startswith(f"{fraction_id}-"):
        raise WebRefusalError(404, "these structures are no longer prepared: reload the page")
    headers = {
        **SECURITY_HEADERS,
        "Content-Encoding": "gzip",
        "Cache-Control": "private, max-age=86400, immutable",
    }
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


@router.post("/review/{fraction_id}/sign")
async def review_sign(
    http: Request,
    fraction_id: FractionId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    axes: CouchAxisForm,
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    decision: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    supersedes: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Sign from the page: the session's person, their password typed again, the CSRF token."""
    if not sessions.csrf_valid(viewer, csrf_token, settings.max_age_seconds):
        raise WebRefusalError(
            403,
            "the form did not come from this page or has expired (CSRF check failed): "
            "nothing was signed; reload the page and sign again",
        )
    if not can_sign(viewer):  # the session's role is known: no password is checked
        raise WebRefusalError(
            403,
            f"only a physician can sign; you are signed in as {viewer.role}: nothing was signed",
        )
    if not password:
        raise WebRefusalError(401, "type your password to sign: nothing was signed")
    if supersedes.strip() and not supersedes.strip().isdigit():
        raise WebRefusalError(422, f"supersedes {supersedes!r} is not a signature id")
    values = axes.numbers(MAX_SHIFT_MM, MAX_ANGLE_DEG, default=None)
    correction = None
    if decision == "approved" and all(v is not None for v in values):
        correction = CouchCorrection(*(float(v) for v in values))  # type: ignore[arg-type]
    assert viewer.user is not None
    request = SignRequest(
        fraction_id=fraction_id,
        username=viewer.user.username,
        password=password,
        decision=decision,
        reason=reason,
        correction=correction,
        supersedes=int(supersedes) if supersedes.strip() else None,
        client=client_address(http),
        session_id=viewer.session_id,
    )
    try:
        signed = await run_in_threadpool(sign, ctx, request, f"web:{viewer.user.username}")
    except NotFoundError as exc:
        raise WebRefusalError(404, exc.detail) from None
    except ServiceError as exc:
        raise WebRefusalError(exc.status_code, exc.detail) from None
    body = signoff_public(signed.signoff, signed.signer).model_dump(mode="json")
    return JSONResponse({"signoff": body}, status_code=201, headers=SECURITY_HEADERS)


@router.post("/review/{fraction_id}/anatomy-acknowledgement")
async def review_anatomy_acknowledgement(
    fraction_id: FractionId,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: DataViewer,
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A physician acknowledges the anatomy-change alert with a note; back to the page."""
    user = check_form(
        viewer,
        csrf_token,
        settings.max_age_seconds,
        Action.ACKNOWLEDGE_ANATOMY,
        refused="only a physician can acknowledge an anatomy-change alert",
    )
    actor = f"web:{user.username}"
    await call_service(
        ctx,
        lambda db: anatomy.acknowledge_anatomy(db, fraction_id, user, note, actor),
        writer=True,
    )
    return Response(
        status_code=303,
        headers={"Location": f"/review/{fraction_id}#anatomy", **SECURITY_HEADERS},
    )
