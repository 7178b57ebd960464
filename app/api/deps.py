"""Annotated dependencies: the database session, who is asking, and what they may do.

Deny by default: every route under ``/api`` takes :data:`CurrentUser` (401 without a valid API key
or user credentials) or a :func:`require_role` dependency (403 for other roles). API keys come
in the ``X-API-Key`` header; people authenticate with HTTP Basic until browser sessions exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials

from app.db import repository as repo
from app.db.models import Role
from app.deps import ContextDep, SessionDep, client_address
from app.permissions import Action, roles_for
from app.services import accounts, security

__all__ = [
    "Configurer",
    "Console",
    "ContextDep",
    "CourseEditor",
    "CurrentUser",
    "Principal",
    "Reader",
    "ReportReader",
    "SessionDep",
    "client_address",
    "require",
    "require_role",
]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key (`mvct-guide api-keys create`)"
)
_basic = HTTPBasic(auto_error=False, description="A person's user name and password")


@dataclass(frozen=True)
class Principal:
    """Who is asking: an API key or a user, with one role."""

    kind: str  #: "api-key" or "user"
    name: str
    role: Role
    full_name: str = ""

    @property
    def actor(self) -> str:
        """How the audit trail names this principal."""
        return f"{self.kind}:{self.name}"


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": 'Basic realm="mvct-guide", charset="UTF-8"'},
    )


def get_current_principal(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Principal:
    if api_key:
        key = repo.api_key_by_digest(session, security.api_key_digest(api_key))
        if key is None or key.revoked_at is not None:
            raise _unauthorized("the API key is not valid (unknown or revoked)")
        return Principal("api-key", key.name, Role(key.role))
    if basic is not None:
        try:
            user = accounts.authenticate(
                ctx, basic.username, basic.password, client_address(request)
            )
        except accounts.TooManySignInAttemptsError as exc:
            raise HTTPException(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                detail=exc.detail,
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from None
        except accounts.SignInError:
            raise _unauthorized("wrong user name or password") from None
        return Principal("user", user.username, Role(user.role), user.full_name)
    raise _unauthorized("authentication required: send an X-API-Key header or log in")


CurrentUser = Annotated[Principal, Depends(get_current_principal)]


def require_role(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets through only ``roles`` (403 for anyone else)."""
    allowed = frozenset(roles)

    def check(principal: CurrentUser) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"the {principal.role.value} role may not do this (needs: {names})",
            )
        return principal

    return check


def require(action: Action) -> Callable[[Principal], Principal]:
    """A dependency that lets through the roles :mod:`app.permissions` allows ``action``."""
    return require_role(*roles_for(action))


Reader = Annotated[Principal, Depends(require(Action.READ))]
Console = Annotated[Principal, Depends(require(Action.POST_IMAGES))]
CourseEditor = Annotated[Principal, Depends(require(Action.CREATE_COURSE))]
Configurer = Annotated[Principal, Depends(require(Action.CHANGE_COURSE))]
ReportReader = Annotated[Principal, Depends(require(Action.READ_REPORTS))]
