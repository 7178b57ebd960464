"""The API documentation: ``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at ``/redoc``.

Not public by default: any authenticated caller (an API key in ``X-API-Key``, or a person by
HTTP Basic — a browser asks for the user name and password) may read them; with
``MVCT_GUIDE_PUBLIC_DOCS=true`` (the demo sets it) anyone may. Swagger UI and ReDoc are served
from the installed ``fastapi-offline`` package under ``/docs-assets`` (generic library files,
public), never from a CDN, so the pages' Content-Security-Policy names no other origin: Swagger
UI's one inline bootstrap script is allowed by its SHA-256, not by ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app.api.deps import get_current_principal

ASSETS = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install(app: FastAPI, public: bool) -> None:
    """Add the three routes (create the app with ``docs_url=redoc_url=openapi_url=None``)."""
    router = APIRouter(
        include_in_schema=False, dependencies=[] if public else [Depends(get_current_principal)]
    )

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )
        return _with_policy(page)

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        return _with_policy(page)

    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    body = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(body)
    )
    policy = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})
