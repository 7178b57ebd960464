"""The shell's exception tree; the HTTP layer maps each to a status with the same words.

    ServiceError               raised on purpose by app/ (status_code, detail)
    ├── BadRequestError        400: the request itself is malformed
    ├── NotFoundError          404: no such fraction, course, ...
    ├── ConflictError          409: clashes with what is stored (MVCT of another patient)
    ├── PayloadTooLargeError   413: the upload exceeds MVCT_GUIDE_MAX_UPLOAD_MB
    └── UnprocessableError     422: well-formed but unusable (wrong patient, no coverage, ...)

``registration.errors.InputError`` (unusable images or options) is mapped to 422 as well.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequestError(ServiceError):
    status_code = 400


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    status_code = 409


class PayloadTooLargeError(ServiceError):
    status_code = 413


class UnprocessableError(ServiceError):
    status_code = 422
