"""DICOM networking and export: C-STORE and STOW-RS in, Spatial Registration (REG) out.

How an instance travels::

    C-STORE (scp.py) ──┐                               ┌─ planning CT ─▶ courses.create_course
                       ├─▶ inbox.receive_file ─▶ grouping ─┤ (series_ingest)
    STOW-RS (stow.py) ─┘   file (fsync) + row, then        ├─ MVCT ─▶ fractions.receive_fraction
      limits: quota.py     the sender's status             │  (the POST /api/v1/fractions path)
                                                           └─ not identified ─▶ unassigned.hold
                                                              (a physicist assigns or discards)

    fraction registered ─▶ reg_export (reg_build) ─▶ GET /api/v1/fractions/{id}/registration.dcm
                                                  └▶ reg_send (C-STORE, after sign-off, optional)

The receiving side only writes the instance durably and answers; everything slow (reading the
series, registering) happens after the association or request has ended.

Exceptions::

    DicomError                 app/dicom's own refusals (message says what to do)
    └── RegExportError         no REG can be made for this fraction (not registered, rejected)
"""

from __future__ import annotations


class DicomError(Exception):
    """A refusal of app/dicom, with words for the person who has to act."""


class RegExportError(DicomError):
    """The fraction has no registration a REG could carry (not done, failed or rejected)."""
