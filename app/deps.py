"""Dependencies shared by every HTTP entry point (JSON API and review pages alike).

Who is asking and what they may do is the entry point's own business (:mod:`app.api.deps`,
:mod:`app.web.deps`, both reading :mod:`app.permissions`); what is here is neutral: the service
context, a database session, the client's address and the largest id a path may name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import proxies
from app.context import ServiceContext

MAX_ID = 2**31 - 1  # the largest id a 32-bit INTEGER column holds


def get_context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.context
    return ctx


ContextDep = Annotated[ServiceContext, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def client_address(request: Request) -> str:
    """The client's address (``X-Forwarded-For`` only from MVCT_GUIDE_TRUSTED_PROXIES)."""
    ctx: ServiceContext = request.app.state.context
    return proxies.client_address(request, ctx.settings.trusted_proxies)
