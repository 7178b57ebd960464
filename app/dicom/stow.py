"""DICOMweb STOW-RS (PS3.18 §10.5): the request body in, the Store Instances Response out.

The request is ``multipart/related; type="application/dicom"; boundary=...`` with one DICOM file
(PS3.10) per part. Parts are streamed to temporary files of the inbox while the body arrives, then
each goes through :func:`app.dicom.inbox.receive_file`, exactly as a C-STORE does. A part beyond
the limits of :mod:`app.dicom.quota` (size, inbox backlog, free disk) stops being written the
moment it crosses them and fails with Out of Resources (0xA700).

Answer (PS3.18 Table 10.5.3-1), body ``application/dicom+json``:

* 200 every instance stored: Referenced SOP Sequence (0008,1199);
* 202 some stored, some failed, or stored with a warning: Referenced SOP Sequence (Warning Reason
  (0008,1196) where due) and Failed SOP Sequence (0008,1198) with the Failure Reason (0008,1197);
* 409 none stored (e.g. not CT, or another study than the one in the URL): Failed SOP Sequence;
* 400 not a multipart body, no boundary, a broken body or no part; 415 another media type than
  ``multipart/related`` with ``type="application/dicom"`` (these two as JSON ``{"detail": ...}``).

No Retrieve URL is given: the service has no WADO-RS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.orm import Session, sessionmaker

from app.dicom.acceptance import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    Received,
    StoreOutcome,
)
from app.dicom.inbox import Inbox, receive_file
from app.dicom.quota import InboxQuota
from app.errors import BadRequestError, ServiceError

log = logging.getLogger(__name__)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"


class UnsupportedMediaTypeError(ServiceError):
    status_code = 415


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a STOW-RS request; 415 or 400 with the reason otherwise."""
    media, params = parse_options_header(content_type or "")
    media_type = media.decode("latin-1").lower()
    if media_type != "multipart/related":
        raise UnsupportedMediaTypeError(
            f"Content-Type {media_type or '(none)'!r} is not supported: send "
            f'multipart/related; type="{DICOM}" with one DICOM file per part'
        )
    part_type = params.get(b"type", b"").decode("latin-1").strip('"').lower()
    if part_type != DICOM:
        raise UnsupportedMediaTypeError(
            f"multipart/related of type {part_type or '(none)'!r} is not supported: only "
            f'type="{DICOM}" (DICOM files; no metadata and bulk data parts)'
        )
    boundary = params.get(b"boundary", b"").strip(b'"')
    if not boundary:
        raise BadRequestError("the Content-Type has no boundary parameter")
    return boundary


@dataclass
class Part:
    """One part of the body: its temporary file, headers, and why it was refused ("" if not)."""

    path: Path
    handle: BinaryIO | None = None
    headers: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    refusal: str = ""


class _Collector:
    """python-multipart callbacks writing each part to its own temporary file."""

    def __init__(self, inbox: Inbox, quota: InboxQuota) -> None:
        self.inbox = inbox
        self.quota = quota
        self.parts: list[Part] = []
        self._field = b""
        self._value = b""
        self.finished = False

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        part = Part(self.inbox.new_tmp_file())
        part.handle = part.path.open("wb")
        self.parts.append(part)

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if part.refusal:
            return
        assert part.handle is not None
        refusal = self.quota.check(part.size_bytes + end - start)
        if refusal:  # stop writing now: the part's bytes are dropped as they arrive
            part.refusal = refusal
            part.handle.close()
            part.handle = None
            part.path.unlink(missing_ok=True)
            return
        part.handle.write(data[start:end])
        part.size_bytes += end - start

    def _part_end(self) -> None:
        self.close_all()

    def _end(self) -> None:
        self.finished = True

    def close_all(self) -> None:
        for part in self.parts:
            if part.handle is not None:
                part.handle.close()
                part.handle = None

    def discard(self) -> None:
        self.close_all()
        for part in self.parts:
            part.path.unlink(missing_ok=True)


async def read_parts(
    chunks: AsyncIterator[bytes], boundary: bytes, inbox: Inbox, quota: InboxQuota
) -> list[Part]:
    """Stream the body into one temporary file per part; 400 on a broken body."""
    inbox.ensure_dirs()
    collector = _Collector(inbox, quota)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        collector.discard()
        raise BadRequestError(f"the multipart body cannot be read ({exc})") from None
    except BaseException:
        collector.discard()
        raise
    collector.close_all()
    if not collector.finished or not collector.parts:
        collector.discard()
        raise BadRequestError(
            "the multipart body holds no complete part (check the boundary and the closing "
            "delimiter)"
        )
    return collector.parts


def store_parts(
    parts: list[Part],
    inbox: Inbox,
    writer: sessionmaker[Session],
    received: Received,
    on_series: Callable[[str], None],
    quota: InboxQuota,
) -> list[StoreOutcome]:
    """Flush and receive each part (run in a worker thread)."""
    outcomes = []
    for part in parts:
        refusal = part.refusal or quota.reserve(part.size_bytes)
        if refusal:
            part.path.unlink(missing_ok=True)
            log.warning("DICOM stow-rs from %s refused (0xA700): %s", received.sender, refusal)
            outcomes.append(StoreOutcome(OUT_OF_RESOURCES, message=refusal))
            continue
        try:
            with part.path.open("rb+") as handle:
                os.fsync(handle.fileno())
        except OSError:
            part.path.unlink(missing_ok=True)
            quota.release(part.size_bytes)
            outcomes.append(StoreOutcome(CANNOT_UNDERSTAND, message="the part was not saved"))
            continue
        outcome = receive_file(inbox, writer, part.path, received, on_series)
        if outcome.status != SUCCESS:
            quota.release(part.size_bytes)
        outcomes.append(outcome)
    return outcomes


def stow_response(outcomes: list[StoreOutcome]) -> tuple[int, dict[str, Any]]:
    """HTTP status and the ``application/dicom+json`` Store Instances Response."""
    response = Dataset()
    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    if stored:
        response.ReferencedSOPSequence = DicomSequence([_referenced(o) for o in stored])
    if failed:
        response.FailedSOPSequence = DicomSequence([_failed(o) for o in failed])
    if not stored:
        status = 409
    elif failed or any(o.status != SUCCESS for o in stored):
        status = 202
    else:
        status = 200
    return status, response.to_json_dict()


def _referenced(outcome: StoreOutcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    if outcome.status != SUCCESS:
        item.WarningReason = outcome.status
    return item


def _failed(outcome: StoreOutcome) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    item.FailureReason = outcome.status
    return item
