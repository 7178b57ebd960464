"""``/api/v1/machine-profiles``: what each treatment machine applies, managed by physicists.

A profile's JSON form is :meth:`registration.machine.MachineProfile.to_dict` (per axis: actuator,
application, limit in mm or degrees, ``null`` for none; no-move tolerances; machine names matched
against the MVCT's StationName). ``PUT /api/v1/machine-profiles/{name}`` creates or replaces one;
every change is audited with the profile before and after. Fractions keep the copy of the profile
they were received with.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.api.deps import ContextDep, Principal, SessionDep, require, require_role
from app.errors import UnprocessableError
from app.permissions import Action, roles_for
from app.schemas.common import ERROR_RESPONSES
from app.services.machines import all_profiles, get_profile, read_profile, set_profile

router = APIRouter(prefix="/api/v1", tags=["machine profiles"], responses=ERROR_RESPONSES)

#: who reads fractions reads the profiles behind their corrections; who manages them too
_READERS = tuple(dict.fromkeys(roles_for(Action.READ) + roles_for(Action.MANAGE_MACHINES)))
ProfileReader = Annotated[Principal, Depends(require_role(*_READERS))]
ProfileEditor = Annotated[Principal, Depends(require(Action.MANAGE_MACHINES))]
ProfileName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f/]*$")]


class MachineProfileOut(BaseModel):
    name: str
    dof: int = Field(description="degrees of freedom the machine corrects (from its axes)")
    profile: dict[str, Any] = Field(description="MachineProfile.to_dict()")


class MachineProfileList(BaseModel):
    profiles: list[MachineProfileOut]


def _out(profile_dict: dict[str, Any]) -> MachineProfileOut:
    profile = read_profile(profile_dict)
    return MachineProfileOut(name=profile.name, dof=int(profile.dof), profile=profile.to_dict())


@router.get("/machine-profiles", response_model=MachineProfileList)
def list_machine_profiles(session: SessionDep, _: ProfileReader) -> MachineProfileList:
    return MachineProfileList(profiles=[_out(row.profile) for row in all_profiles(session)])


@router.get("/machine-profiles/{name}", response_model=MachineProfileOut)
def get_machine_profile(
    name: ProfileName, session: SessionDep, _: ProfileReader
) -> MachineProfileOut:
    return _out(get_profile(session, name).to_dict())


@router.put(
    "/machine-profiles/{name}",
    response_model=MachineProfileOut,
    responses={201: {"model": MachineProfileOut, "description": "a new profile"}},
)
async def put_machine_profile(
    name: ProfileName,
    body: Annotated[dict[str, Any], Body(description="MachineProfile.to_dict() form")],
    response: Response,
    principal: ProfileEditor,
    ctx: ContextDep,
) -> MachineProfileOut:
    profile = read_profile(body)
    if profile.name != name:
        raise UnprocessableError(
            f"the profile's name {profile.name!r} differs from the address's {name!r}: "
            "PUT a profile to /api/v1/machine-profiles/<its name>"
        )
    created = await run_in_threadpool(set_profile, ctx, profile, principal.actor)
    if created:
        response.status_code = 201
    return _out(profile.to_dict())
