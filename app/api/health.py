"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, workers warm)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import ContextDep
from app.context import ServiceContext

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str  #: "ready" or "not ready"
    database: str  #: "ok" or the error
    workers_configured: int
    workers_warm: int


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(ctx: ContextDep, response: Response) -> Readiness:
    database = await run_in_threadpool(_database_state, ctx)
    warm = 0 if ctx.pool is None else sum(1 for slot in ctx.pool.slots if slot.warm)
    embedded = ctx.settings.start_workers and ctx.settings.queue == "embedded"
    configured = ctx.settings.workers if embedded else 0
    if ctx.settings.queue == "embedded":
        ready = database == "ok" and ctx.pool is not None and ctx.pool.is_warm()
    else:  # registrations run in `mvct-guide worker` processes elsewhere: a replica needs its DB
        ready = database == "ok"
    if not ready:
        response.status_code = 503
    return Readiness(
        status="ready" if ready else "not ready",
        database=database,
        workers_configured=configured,
        workers_warm=warm,
    )


def _database_state(ctx: ServiceContext) -> str:
    try:
        with ctx.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return "ok"
