"""The exceptions raised by :mod:`app.services.reports`.

    ReportError             base of everything raised on purpose by this package
    └── ReportInputError    the rows or the context cannot make a report (HTTP 422, exit 2)

Rendering never raises on purpose: an empty report is a valid report in every format.
"""

from __future__ import annotations


class ReportError(Exception):
    """Base class of the errors this package raises on purpose."""


class ReportInputError(ReportError, ValueError):
    """A row or a context value is unusable; the message names it and says what to do."""
