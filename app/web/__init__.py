"""The physician's pages: sign-in, the worklist, the review and signature of one fraction.

:func:`install` adds them to the service. Pages are server-rendered (Jinja2) and small; the
review's image views are drawn in the browser from compact volumes (``volumes.py``,
``static/review.js``), so adjusting the correction never waits for the server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from app.config import Settings

STATIC_DIR = Path(__file__).with_name("static")


def install(app: FastAPI, settings: Settings) -> None:
    """Add the pages to ``app``; ``settings`` is the service's (the same object everywhere)."""
    from app.web import (
        deps,
        routes_auth,
        routes_held,
        routes_qa,
        routes_reports,
        routes_review,
        routes_worklist,
    )
    from app.web.volumes import ReviewVolumes

    app.state.web_settings = settings
    app.state.review_volumes = ReviewVolumes(
        settings.data_dir / "review-cache", settings.review_cache_fractions
    )

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, deps.LoginRequiredError)
        return deps.login_redirect(request, exc.next_url)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, deps.WebRefusalError)
        return deps.refusal(request, exc)

    app.add_exception_handler(deps.LoginRequiredError, login_required)
    app.add_exception_handler(deps.WebRefusalError, refused)
    app.include_router(routes_auth.router)
    app.include_router(routes_worklist.router)
    app.include_router(routes_review.router)
    app.include_router(routes_reports.router)
    app.include_router(routes_qa.router)
    app.include_router(routes_held.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
