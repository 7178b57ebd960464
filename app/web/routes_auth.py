"""Sign-in and sign-out pages."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.config import Settings
from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import Role
from app.deps import ContextDep, client_address
from app.services import accounts
from app.web import pre_session, sessions
from app.web.deps import (
    SECURITY_HEADERS,
    OptionalViewer,
    WebRefusalError,
    WebSettingsDep,
    page,
    safe_next,
)
from app.web.sessions import PAGE_ROLES, Viewer

router = APIRouter(include_in_schema=False)


def _set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        settings.cookie_name,
        token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        path="/",
    )


def _redirect(location: str) -> Response:
    return Response(status_code=303, headers={"Location": location, **SECURITY_HEADERS})


@router.get("/")
def home() -> Response:
    return _redirect("/worklist")


@router.get("/login")
def login_page(
    request: Request,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: OptionalViewer,
    next: str | None = None,
) -> Response:
    target = safe_next(next)
    if viewer is not None and viewer.signed_in:
        return _redirect(target)
    nonce = None
    if viewer is None:
        viewer = pre_session.viewer(request, settings)
        if viewer is None:
            nonce, viewer = pre_session.new()
    response = _login_form(request, viewer, target, settings, None, 200)
    if nonce is not None:
        pre_session.set_cookie(response, settings, nonce)
    return response


def _login_form(
    request: Request,
    viewer: Viewer,
    target: str,
    settings: Settings,
    error: str | None,
    status_code: int,
    username: str = "",
) -> Response:
    context = {
        "csrf_token": sessions.csrf_token(viewer),
        "next": target,
        "error": error,
        "username": username,
        "idle_minutes": settings.session_idle_minutes,
    }
    return page(request, "login.html", context, status_code)


@router.post("/login")
async def login(
    request: Request,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: OptionalViewer,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/worklist",
) -> Response:
    target = safe_next(next)
    if viewer is None:
        viewer = pre_session.viewer(request, settings)
    if viewer is None or not sessions.csrf_valid(viewer, csrf_token, settings.max_age_seconds):
        nonce: str | None = None
        if viewer is None:
            nonce, fresh = pre_session.new()
        else:
            fresh = viewer
        message = (
            "the sign-in form had expired or did not come from this page: nothing was done; "
            "enter your user name and password again"
        )
        response = _login_form(request, fresh, target, settings, message, 403)
        if nonce is not None:
            pre_session.set_cookie(response, settings, nonce)
        return response
    outcome = await run_in_threadpool(
        _check_credentials, ctx, settings, viewer, username, password, client_address(request)
    )
    if isinstance(outcome, str):
        return _login_form(request, viewer, target, settings, outcome, 401, username[:64])
    response = _redirect(target)
    _set_cookie(response, settings, outcome[0])
    pre_session.delete_cookie(response, settings)
    return response


def _check_credentials(
    ctx: ServiceContext,
    settings: Settings,
    viewer: Viewer,
    username: str,
    password: str,
    client: str,
) -> tuple[str, int] | str:
    """(cookie token, session id) of the new session, or the reason for refusing.

    The password is checked by :func:`app.services.accounts.authenticate`, the one place that
    applies the
    sign-in rate limit (per user name and per client address, counted in the database) and
    records failures without storing what was typed.
    """
    try:
        user = accounts.authenticate(ctx, username, password, client)
    except accounts.TooManySignInAttemptsError as exc:
        minutes = max(1, math.ceil(exc.retry_after_s / 60))
        return f"too many failed sign-ins: try again in {minutes} minute(s)"
    except accounts.SignInError:
        return "wrong user name or password"
    with ctx.writer() as db:
        if Role(user.role) not in PAGE_ROLES:
            repo.record_audit(
                db, actor="web", action="sign_in_failed", entity="user",
                entity_id=user.username, detail={"role": user.role},
            )  # fmt: skip
            db.commit()
            return f"the {user.role} role cannot use the review pages"
        if viewer.session_id:  # an anonymous session of an older version ends: no fixation
            sessions.revoke(db, viewer.session_id)
        sessions.purge(db, settings)
        token, row = sessions.open_session(db, user.id)
        repo.record_audit(
            db, actor=f"user:{user.username}", action="signed_in", entity="user",
            entity_id=user.username, detail={"session_id": row.id},
        )  # fmt: skip
        db.commit()
        return token, row.id


@router.post("/logout")
async def logout(
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: OptionalViewer,
    csrf_token: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    if viewer is None:
        return _redirect("/login")
    if not sessions.csrf_valid(viewer, csrf_token, settings.max_age_seconds):
        raise WebRefusalError(403, "the form did not come from this site: nothing was done")
    await run_in_threadpool(_end, ctx, viewer)
    response = _redirect("/login")
    response.delete_cookie(settings.cookie_name, path="/", secure=settings.cookie_secure)
    return response


def _end(ctx: ServiceContext, viewer: Viewer) -> None:
    with ctx.writer() as db:
        sessions.revoke(db, viewer.session_id)
        if viewer.user is not None:
            repo.record_audit(
                db, actor=f"user:{viewer.user.username}", action="signed_out", entity="user",
                entity_id=viewer.user.username, detail={"session_id": viewer.session_id},
            )  # fmt: skip
        db.commit()
