"""``POST /api/v1/fractions/{id}/signoff``: a physician signs the decision on a fraction.

The request carries the physician's own user name and password: they are the signature (the
same checks, the same record and the same audit as the review page, see
:mod:`app.services.signoff`).
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ContextDep, client_address
from app.deps import MAX_ID
from app.schemas.common import ERROR_RESPONSES, ErrorOut
from app.schemas.signoff import SignoffPublic, SignoffRequest, signoff_public
from app.services.signoff import SignRequest, sign
from registration.couch import CouchCorrection

router = APIRouter(
    prefix="/api/v1",
    tags=["sign-off"],
    responses={**ERROR_RESPONSES, 429: {"model": ErrorOut}},  # the sign-in rate limit
)


async def _signature_given(request: Request) -> None:
    """401 before anything else when the body carries no user name and password."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    if not (
        isinstance(body, dict)
        and isinstance(body.get("username"), str)
        and isinstance(body.get("password"), str)
        and body["username"]
        and body["password"]
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="authentication required: sign with your own user name and password "
            "(JSON fields 'username' and 'password')",
            headers={"WWW-Authenticate": 'Basic realm="mvct-guide", charset="UTF-8"'},
        )


@router.post(
    "/fractions/{fraction_id}/signoff",
    status_code=201,
    response_model=SignoffPublic,
    dependencies=[Depends(_signature_given)],
)
async def post_signoff(
    fraction_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: SignoffRequest,
    ctx: ContextDep,
    http: Request,
) -> SignoffPublic:
    """Sign approve / approve adjusted / reject. Only a physician can sign: a wrong password,
    an unknown user and another role all get the same 401, within the sign-in rate limit (429).
    A fraction already signed needs ``supersedes`` (the latest signature's id) and a reason."""
    given = body.couch_correction
    request = SignRequest(
        fraction_id=fraction_id,
        username=body.username,
        password=body.password,
        decision=body.decision,
        reason=body.reason,
        correction=None if given is None else CouchCorrection(**given.model_dump()),
        supersedes=body.supersedes,
        client=client_address(http),
    )
    signed = await run_in_threadpool(sign, ctx, request, f"user:{body.username[:64]}")
    return signoff_public(signed.signoff, signed.signer)
