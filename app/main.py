"""``create_app(settings)``: the FastAPI application. Nothing heavy happens at import.

On start-up (lifespan) the database is migrated, orphan files are swept, the registration
workers are started and warmed, and jobs a dead service left behind are queued again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app import lifecycle, web
from app.api import (
    anatomy_qa,
    courses,
    dicom_unassigned,
    dicomweb,
    docs,
    fractions,
    health,
    patients,
    registration_dcm,
    reports,
    signoff,
)
from app.api import errors as api_errors
from app.api import faults as api_faults
from app.api.limits import UploadLimitMiddleware
from app.config import Settings
from app.dicom.service import DicomService
from app.headers import SecurityHeadersMiddleware
from app.jobs.pool import WorkerPool

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
    dicom = DicomService(ctx)  # checks the DICOM settings now; starts with the service

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owns_pool = await run_in_threadpool(lifecycle.start, ctx, dicom)
        try:
            yield
        finally:
            await run_in_threadpool(lifecycle.stop, ctx, owns_pool, dicom)

    app = FastAPI(
        title="mvct-guide",
        version=_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # app/api/docs.py: not public unless MVCT_GUIDE_PUBLIC_DOCS, no CDN
        redoc_url=None,
        openapi_url=None,
    )
    app.state.context = ctx
    app.state.dicom = dicom
    app.add_middleware(UploadLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(SecurityHeadersMiddleware, hsts_max_age_s=settings.hsts_max_age_s)
    api_errors.install(app)
    api_faults.install(app)
    app.include_router(health.router)
    app.include_router(fractions.router)
    app.include_router(courses.router)
    app.include_router(patients.router)
    app.include_router(reports.router)
    app.include_router(signoff.router)
    app.include_router(registration_dcm.router)
    app.include_router(dicomweb.router)
    app.include_router(anatomy_qa.router)
    app.include_router(dicom_unassigned.router)
    docs.install(app, public=settings.public_docs)
    web.install(app, settings)
    return app


def _version() -> str:
    from app import __version__

    return __version__
