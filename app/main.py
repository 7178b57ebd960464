"""``create_app(settings)``: the FastAPI application. Nothing heavy happens at import.

On start-up (lifespan) the database is migrated, orphan files are swept, the registration
workers are started and warmed, and jobs a dead service left behind are queued again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app import lifecycle
from app.api import courses, fractions, health, patients
from app.api import errors as api_errors
from app.api.limits import UploadLimitMiddleware
from app.config import Settings
from app.pool import WorkerPool

API_DESCRIPTION = """
Daily MVCT image guidance for the treatment console.

Authenticate with an API key in the `X-API-Key` header (`mvct-guide api-keys create NAME`) or,
for people, HTTP Basic. Every refusal is JSON `{"detail": "..."}` with words a therapist can act
on. Couch corrections are in IEC 61217 table axes (mm, degrees).
"""


def create_app(settings: Settings | None = None, *, pool: WorkerPool | None = None) -> FastAPI:
    """The service for ``settings``; ``pool`` lets tests share one warm worker pool."""
    settings = settings or Settings()
    ctx = lifecycle.build_context(settings, pool)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owns_pool = await run_in_threadpool(lifecycle.start, ctx)
        try:
            yield
        finally:
            await run_in_threadpool(lifecycle.stop, ctx, owns_pool)

    app = FastAPI(
        title="mvct-guide",
        version=_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    api_errors.install(app)
    app.include_router(health.router)
    app.include_router(fractions.router)
    app.include_router(courses.router)
    app.include_router(patients.router)
    return app


def _version() -> str:
    from app import __version__

    return __version__
