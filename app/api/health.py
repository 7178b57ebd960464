"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, a worker can take a job).

Embedded mode: ready while the database answers and at least one registration worker process is
alive and warm (ITK loaded); ``workers_warm`` counts those. A worker that dies is replaced in the
background (:mod:`app.jobs.pool`) while the others serve; with one worker configured the service
is not ready until its replacement has warmed up.
"""

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
    warm = 0 if ctx.pool is None else ctx.pool.warm_alive()
    embedded = ctx.settings.start_workers and ctx.settings.queue == "embedded"
    configured = ctx.settings.workers if embedded else 0
    if ctx.settings.queue == "embedded":
        ready = database == "ok" and ctx.pool is not None and ctx.pool.can_take_job()
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
