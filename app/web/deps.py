"""Who is behind a browser request, and the page helpers every route uses."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, overload
from urllib.parse import quote

from fastapi import Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.config import Settings
from app.context import ServiceContext
from app.db.models import User
from app.deps import ContextDep
from app.errors import ServiceError
from app.permissions import Action, may, roles_for
from app.web import sessions
from app.web.sessions import PAGE_ROLES, Viewer
from registration.couch import CouchCorrection

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequiredError(Exception):
    """A page needs a signed-in person: go to the sign-in page, then come back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class WebRefusalError(Exception):
    """A refusal on a page or a page's data request, shown in the page's own words."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def web_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.web_settings
    return settings


WebSettingsDep = Annotated[Settings, Depends(web_settings)]


def load_viewer(
    request: Request, ctx: ServiceContext, settings: Settings, *, touch: bool
) -> Viewer | None:
    token = request.cookies.get(settings.cookie_name)
    if not token:
        return None
    with ctx.sessions() as db:
        viewer = sessions.find(db, token, settings)
        stale = viewer is not None and touch and sessions.needs_touch(db, viewer.session_id)
    if viewer is not None and stale:
        with ctx.writer() as db:
            sessions.touch(db, viewer.session_id)
            db.commit()
    return viewer


def optional_viewer(request: Request, ctx: ContextDep, settings: WebSettingsDep) -> Viewer | None:
    return load_viewer(request, ctx, settings, touch=True)


def page_viewer(request: Request, ctx: ContextDep, settings: WebSettingsDep) -> Viewer:
    """A signed-in person with a role that may see the pages (else: sign in, or 403)."""
    viewer = load_viewer(request, ctx, settings, touch=True)
    if viewer is None or viewer.user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(target)
    _check_role(viewer)
    return viewer


def data_viewer(request: Request, ctx: ContextDep, settings: WebSettingsDep) -> Viewer:
    """Like :func:`page_viewer` for the pages' own requests: 401 instead of a redirect.

    Requests the page makes by itself (polling) do not count as activity for the idle timeout.
    """
    touch = request.headers.get("X-Requested-By") != "poll"
    viewer = load_viewer(request, ctx, settings, touch=touch)
    if viewer is None or viewer.user is None:
        raise WebRefusalError(401, "your session has ended: sign in again")
    _check_role(viewer)
    return viewer


def _check_role(viewer: Viewer) -> None:
    if viewer.role not in PAGE_ROLES:
        raise WebRefusalError(
            403,
            f"the {viewer.role} role cannot use the review pages (therapists, physicians "
            "and physicists can)",
        )


OptionalViewer = Annotated[Viewer | None, Depends(optional_viewer)]
PageViewer = Annotated[Viewer, Depends(page_viewer)]
DataViewer = Annotated[Viewer, Depends(data_viewer)]


def can_sign(viewer: Viewer) -> bool:
    return may(viewer.role, Action.SIGN_OFF)


def check_form(
    viewer: Viewer, token: str, max_age_s: float, action: Action, refused: str | None = None
) -> User:
    """The person behind a page's form, once its CSRF token is valid and their role may
    ``action``; else a 403 in words (``refused``, or one naming the roles that may)."""
    if not sessions.csrf_valid(viewer, token, max_age_s):
        raise WebRefusalError(403, "the form has expired (CSRF check failed): reload the page")
    if not may(viewer.role, action) or viewer.user is None:
        names = " or ".join(r.value for r in roles_for(action))
        raise WebRefusalError(403, refused or f"only a {names} can do this (you are {viewer.role})")
    return viewer.user


async def call_service(
    ctx: ServiceContext, work: Callable[[Session], Any], *, writer: bool = False
) -> Any:
    """``work(session)`` in the thread pool (a writer session when it writes); a service's
    refusal becomes the page's refusal, with its status and words."""

    def run() -> Any:
        with ctx.writer() if writer else ctx.sessions() as db:
            return work(db)

    try:
        return await run_in_threadpool(run)
    except ServiceError as exc:
        raise WebRefusalError(exc.status_code, exc.detail) from None


@overload
def form_number(text: str, label: str, limit: float, *, default: float) -> float: ...
@overload
def form_number(text: str, label: str, limit: float, *, default: None) -> float | None: ...
def form_number(text: str, label: str, limit: float, *, default: float | None) -> float | None:
    """The number typed in a form field, within ±``limit``; ``default`` when it is left empty.

    Anything else is refused (422) in words that name the field and the value.
    """
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise WebRefusalError(422, f"{label} {text!r} is not a number") from None
    if not -limit <= value <= limit:
        raise WebRefusalError(422, f"{label} {value:g} is outside ±{limit:g}")
    return value


@dataclass(frozen=True)
class CouchAxisTexts:
    """The six couch-axis fields of a form as typed, in :attr:`CouchCorrection.AXES` order."""

    texts: tuple[str, ...]

    @overload
    def numbers(self, max_mm: float, max_deg: float, *, default: float) -> list[float]: ...
    @overload
    def numbers(self, max_mm: float, max_deg: float, *, default: None) -> list[float | None]: ...
    def numbers(
        self, max_mm: float, max_deg: float, *, default: float | None
    ) -> list[float] | list[float | None]:
        """Each axis as a number (:func:`form_number`): within ±``max_mm`` for the translations,
        ±``max_deg`` for the angles, ``default`` where the field was left empty."""
        translations = CouchCorrection.TRANSLATION_AXES
        return [
            form_number(text, axis, max_mm if axis in translations else max_deg, default=default)
            for axis, text in zip(CouchCorrection.AXES, self.texts, strict=True)
        ]


class _CouchAxisFields:
    """A dependency whose form fields are named by :attr:`CouchCorrection.AXES` (empty: "")."""

    __signature__ = inspect.Signature(
        [
            inspect.Parameter(
                axis,
                inspect.Parameter.KEYWORD_ONLY,
                default="",
                annotation=Annotated[str, Form(max_length=32)],
            )
            for axis in CouchCorrection.AXES
        ]
    )

    def __call__(self, **texts: str) -> CouchAxisTexts:
        return CouchAxisTexts(tuple(texts[axis] for axis in CouchCorrection.AXES))


#: the ``lateral_mm`` … ``yaw_deg`` fields of the review sign form and the QA offset form
CouchAxisForm = Annotated[CouchAxisTexts, Depends(_CouchAxisFields())]


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def login_redirect(request: Request, next_url: str) -> Response:
    """303 to the sign-in page; a link from another site first hops through this site.

    SameSite=Strict keeps the cookie off a navigation that started on another site (a link in
    the console's software): one same-site hop brings it back, so a signed-in person is not
    asked to sign in again.
    """
    next_url = safe_next(next_url)
    location = f"/login?next={quote(next_url, safe='/')}"
    if request.method == "GET" and request.headers.get("Sec-Fetch-Site") == "cross-site":
        return page(request, "hop.html", {"target": next_url})
    return Response(status_code=303, headers={"Location": location, **SECURITY_HEADERS})


def refusal(request: Request, exc: WebRefusalError) -> Response:
    wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
    if wants_html:
        return page(request, "refused.html", {"detail": exc.detail}, exc.status_code)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


def safe_next(value: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme): an open redirect otherwise."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/worklist"
    if any(not c.isprintable() for c in value):
        return "/worklist"
    return value
