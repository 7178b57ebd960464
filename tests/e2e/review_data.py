"""Fractions with a known registration result, without running the engine.

The images are the simulated MVCTs of ``service_fixtures.samples`` (known motion M); the result
row is what a perfect registration would answer — or, with ``lateral_error_mm``, an answer wrong
by that much along IEC X — so the review pages can be checked against the truth.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.accounts import create_api_key
from app.context import ServiceContext
from app.db.models import Job, JobStatus, RegistrationResult, Role
from registration.couch import (
    Dof,
    correction_as_planning_to_daily,
    couch_correction_6dof,
    couch_correction_for_dof,
)
from registration.frames import PatientPosition
from registration.geometry import LpsPoint, RigidTransformLps
from registration.result import Mode, RegistrationQuality
from registration.result import RegistrationResult as EngineResult


def upload(field: str, folder: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        (field, (p.name, p.read_bytes(), "application/dicom"))
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]


def console_key(ctx: ServiceContext, name: str = "review-console") -> dict[str, str]:
    with ctx.writer.begin() as session:
        return {"X-API-Key": create_api_key(session, name, Role.CONSOLE, "test")}


def known_result(
    motion: RigidTransformLps,
    isocenter: LpsPoint,
    position: PatientPosition,
    dof: Dof = Dof.SIX,
    *,
    lateral_error_mm: float = 0.0,
    trusted: bool = True,
    warnings: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The result dict a registration of ``motion`` would store (optionally wrong in X)."""
    machine = couch_correction_for_dof(motion, isocenter, position, dof)
    six = couch_correction_6dof(motion, isocenter, position)
    if lateral_error_mm:
        machine = replace(machine, lateral_mm=machine.lateral_mm + lateral_error_mm)
        six = replace(six, lateral_mm=six.lateral_mm + lateral_error_mm)
        motion = correction_as_planning_to_daily(six, isocenter, position)
    return EngineResult(
        planning_to_daily_lps=motion,
        couch_correction=machine,
        couch_correction_6dof=six,
        isocenter_lps_mm=isocenter,
        patient_position=position,
        dof=dof,
        mode=Mode.TISSUE,
        quality=RegistrationQuality(1.25, 0.98, 480, 0.8, 0.2, True),
        trusted=trusted,
        warnings=warnings,
        engine_version="test",
    ).to_dict()


def store_result(ctx: ServiceContext, fraction_id: int, result: dict[str, Any]) -> None:
    """Write the result row and mark the job done, as the job runner would."""
    couch = result["couch_correction"]
    with ctx.writer() as session:
        session.add(
            RegistrationResult(
                fraction_id=fraction_id,
                result=result,
                trusted=bool(result["trusted"]),
                engine_version="test",
                **{axis: couch[axis] for axis in couch},
            )
        )
        session.execute(
            update(Job).where(Job.fraction_id == fraction_id).values(status=JobStatus.DONE.value)
        )
        session.commit()


def post_fraction(client: Any, headers: dict[str, str], mvct: Path, **data: Any) -> dict[str, Any]:
    """POST a fraction (no workers: it stays queued) and return its JSON."""
    planning = data.pop("planning", None)
    files = upload("mvct", mvct) + (upload("planning", planning) if planning else [])
    response = client.post("/api/v1/fractions", headers=headers, data=data, files=files)
    assert response.status_code in (200, 201, 202), response.text
    body: dict[str, Any] = response.json()
    return body
