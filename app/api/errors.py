"""Exception handlers: every refusal is ``{"detail": "<words a therapist can act on>"}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.errors import ServiceError
from registration.errors import InputError


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(InputError, _input_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after_s", None)  # 429 of the sign-in rate limit
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _input_error(_: Request, exc: InputError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": describe_validation_errors(exc.errors())}, status_code=422)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``"fraction_number: Input should be greater than or equal to 1; mvct: Field required"``."""
    parts = []
    for error in errors:
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(location) or "request"
        parts.append(f"{field}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"
