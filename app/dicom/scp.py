"""The DICOM Storage SCP (pynetdicom), started with the service when ``dicom_port`` is set.

Accepts Verification and CT Image Storage — in the uncompressed transfer syntaxes and in every
compressed one an installed pydicom decoder reads — from the calling AE titles of
``dicom_allowed_aes`` (any when empty), addressed to ``dicom_ae_title`` (unless
``dicom_check_called_ae`` is off). Other SOP classes are not negotiated (the presentation context
is rejected, so the sender learns at association time). Association rejections use the standard
reasons (PS3.8 9.3.4): permanent, by the service user, "calling AE title not recognized" (3) or
"called AE title not recognized" (7); they are logged.

The C-STORE handler only writes the instance durably (:func:`app.dicom.inbox.receive_file`) and
returns its status; the grouper is woken when the association ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RTPlanStorage,
    RTStructureSetStorage,
)
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.dicom.acceptance import OUT_OF_RESOURCES, Received, decodable
from app.dicom.grouping import InFlight
from app.dicom.inbox import Inbox, receive_file
from app.dicom.rules import ae_titles

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)


def ct_transfer_syntaxes() -> list[str]:
    """Uncompressed first, then the compressed syntaxes an installed decoder reads."""
    compressed = [
        str(uid) for uid in AllTransferSyntaxes if UID(uid).is_compressed and decodable(UID(uid))
    ]
    return [str(uid) for uid in UNCOMPRESSED] + compressed


class StorageScp:
    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        writer: sessionmaker[Session],
        in_flight: InFlight,
        on_association_end: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._inbox = inbox
        self._writer = writer
        self._in_flight = in_flight
        self._on_association_end = on_association_end
        self._allowed = sorted(ae_titles(settings.dicom_allowed_aes))
        self._server: Any = None

    @property
    def address(self) -> tuple[str, int]:
        return self._settings.dicom_host, self._settings.dicom_port

    def start(self) -> None:
        from pynetdicom import AE, evt

        ae = AE(ae_title=self._settings.dicom_ae_title)
        ae.require_called_aet = self._settings.dicom_check_called_ae
        ae.require_calling_aet = self._allowed
        ae.add_supported_context(VERIFICATION, [str(u) for u in UNCOMPRESSED[:2]])
        ae.add_supported_context(CTImageStorage, ct_transfer_syntaxes())
        for rt_class in (RTStructureSetStorage, RTPlanStorage):  # the planning package
            ae.add_supported_context(rt_class, [str(u) for u in UNCOMPRESSED])
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_CONN_CLOSE, self._on_end),
        ]
        self._server = ae.start_server(self.address, block=False, evt_handlers=handlers)
        allowed = ", ".join(self._allowed) or "any calling AE"
        log.info(
            "DICOM SCP %s listening on %s:%d (accepting %s)",
            self._settings.dicom_ae_title,
            *self.address,
            allowed,
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # --- event handlers (run in pynetdicom's association threads) -----------------------

    def _on_accepted(self, event: Any) -> None:
        self._in_flight.begin(event.assoc)

    def _on_rejected(self, event: Any) -> None:
        requestor = event.assoc.requestor
        log.warning(
            "DICOM association refused: calling AE %r from %s (allowed: %s), called AE %r "
            "(ours: %r)",
            requestor.ae_title,
            requestor.address,
            ", ".join(self._allowed) or "any",
            event.assoc.acceptor.ae_title,
            self._settings.dicom_ae_title,
        )

    def _on_end(self, event: Any) -> None:
        self._in_flight.end(event.assoc)
        self._on_association_end()

    def _on_store(self, event: Any) -> Dataset:
        calling = str(event.assoc.requestor.ae_title).strip()
        request = event.request
        try:
            tmp = self._inbox.write_tmp(event.encoded_dataset(include_meta=True))
        except OSError as exc:
            log.exception("DICOM inbox write failed")
            return _status(OUT_OF_RESOURCES, f"cannot write: {exc.strerror or exc}")
        received = Received(
            source="c-store",
            sender=calling,
            expected_sop_class_uid=str(request.AffectedSOPClassUID),
            expected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
        )
        outcome = receive_file(
            self._inbox,
            self._writer,
            tmp,
            received,
            on_series=lambda uid: self._in_flight.add(event.assoc, uid),
        )
        return _status(outcome.status, outcome.message)


def _status(code: int, message: str) -> Dataset:
    status = Dataset()
    status.Status = code
    if message and not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
        status.ErrorComment = message[:64]  # LO, failures only
    return status
