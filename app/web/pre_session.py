"""The sign-in form's CSRF protection without a session row.

``GET /login`` writes nothing to the database: a browser without a session gets a short-lived
cookie holding 32 random bytes (HttpOnly, SameSite=Strict, Secure like the session cookie), and
the form's CSRF token is signed with them (:func:`app.web.sessions.csrf_token`, session id 0).
A forged sign-in from another site has neither the cookie nor a token signed with it. The
session itself is created at sign-in only (``routes_auth``), so unauthenticated requests
cannot fill the ``browser_sessions`` table.
"""

from __future__ import annotations

import secrets

from fastapi import Request
from fastapi.responses import Response

from app.config import Settings
from app.web.sessions import Viewer

_MAX_AGE_S = 3600


def new() -> tuple[str, Viewer]:
    nonce = secrets.token_hex(32)
    return nonce, Viewer(0, nonce, None)


def viewer(request: Request, settings: Settings) -> Viewer | None:
    nonce = request.cookies.get(settings.login_cookie_name, "")
    if len(nonce) != 64 or any(c not in "0123456789abcdef" for c in nonce):
        return None
    return Viewer(0, nonce, None)


def set_cookie(response: Response, settings: Settings, nonce: str) -> None:
    response.set_cookie(
        settings.login_cookie_name,
        nonce,
        max_age=_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        path="/",
    )


def delete_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(settings.login_cookie_name, path="/", secure=settings.cookie_secure)
