"""The DICOM Storage SCP (pynetdicom), started with the service when ``dicom_port`` is set.

Accepts Verification and CT Image Storage — in the uncompressed transfer syntaxes and in every
compressed one an installed pydicom decoder reads — only from the calling AE titles configured
(``dicom_allowed_aes``, ``dicom_mvct_aes``, ``dicom_planning_aes``; none configured: every
association is refused, and the log says so at start), addressed to ``dicom_ae_title`` (unless
``dicom_check_called_ae`` is off). Other SOP classes are not negotiated (the presentation context
is rejected, so the sender learns at association time). Association rejections use the standard
reasons (PS3.8 9.3.4): permanent, by the service user, "calling AE title not recognized" (3) or
"called AE title not recognized" (7); they are logged.

The C-STORE handler only writes the instance durably (:func:`app.dicom.inbox.receive_file`) and
returns its status; the grouper is woken when the association ends. A data set beyond the limits
of :mod:`app.dicom.quota` (size, inbox backlog, free disk) is answered Out of Resources (0xA700)
without being written; one still arriving beyond twice the size limit ends the association.
"""

from __future__ import annotations

import logging
import threading
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
from app.dicom.quota import InboxQuota
from app.dicom.rules import allowed_callers

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
        *,
        quota: InboxQuota,
    ) -> None:
        self._settings = settings
        self._quota = quota
        self._arriving = _ArrivingBytes(2 * quota.max_dataset_bytes)
        self._inbox = inbox
        self._writer = writer
        self._in_flight = in_flight
        self._on_association_end = on_association_end
        self._allowed = sorted(allowed_callers(settings))
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
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_CONN_CLOSE, self._on_end),
        ]
        self._server = ae.start_server(self.address, block=False, evt_handlers=handlers)
        if not self._allowed:
            log.warning(
                "DICOM SCP %s listening on %s:%d refuses every association: no calling AE title "
                "is configured (MVCT_GUIDE_DICOM_ALLOWED_AES, MVCT_GUIDE_DICOM_MVCT_AES, "
                "MVCT_GUIDE_DICOM_PLANNING_AES)",
                self._settings.dicom_ae_title,
                *self.address,
            )
            return
        log.info(
            "DICOM SCP %s listening on %s:%d (accepting calling AE titles %s; every other one "
            "is refused)",
            self._settings.dicom_ae_title,
            *self.address,
            ", ".join(self._allowed),
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # --- event handlers (run in pynetdicom's association threads) -----------------------

    def _on_requested(self, event: Any) -> None:
        """Refuse a calling AE title configured nowhere (pynetdicom's own check lets every
        title in when its list is empty)."""
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        if calling in self._allowed:
            return
        log.warning(
            "DICOM association refused: calling AE %r from %s is not configured (allowed: %s)",
            calling,
            event.assoc.requestor.address,
            ", ".join(self._allowed) or "none",
        )
        # permanent, by the service user, "calling AE title not recognized" (PS3.8 9.3.4)
        event.assoc.acse.send_reject(0x01, 0x01, 0x03)
        event.assoc.kill()  # as pynetdicom's own rejection: the DUL sends the PDU, then stops

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
        self._arriving.forget(event.assoc)
        self._in_flight.end(event.assoc)
        self._on_association_end()

    def _on_data(self, event: Any) -> None:
        """Count P-DATA bytes; end an association whose data set outgrows twice the limit."""
        if event.data[:1] != b"\x04":  # P-DATA-TF
            return
        if self._arriving.add(event.assoc, len(event.data)):
            log.warning(
                "DICOM association from %r aborted: a data set beyond %d MB was still arriving "
                "(MVCT_GUIDE_DICOM_MAX_DATASET_MB is %g)",
                str(event.assoc.requestor.ae_title).strip(),
                self._arriving.limit_bytes // (1024 * 1024),
                self._settings.dicom_max_dataset_mb,
            )
            event.assoc.abort()

    def _on_store(self, event: Any) -> Dataset:
        calling = str(event.assoc.requestor.ae_title).strip()
        request = event.request
        self._arriving.forget(event.assoc)
        encoded = event.encoded_dataset(include_meta=True)
        size_bytes = len(encoded)
        refusal = self._quota.reserve(size_bytes)
        if refusal is not None:
            log.warning("DICOM C-STORE from %s refused (0xA700): %s", calling, refusal)
            return _status(OUT_OF_RESOURCES, refusal)
        status, message = OUT_OF_RESOURCES, ""
        try:
            tmp = self._inbox.write_tmp(encoded)
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
            status, message = outcome.status, outcome.message
        except OSError as exc:
            log.exception("DICOM inbox write failed")
            message = f"cannot write: {exc.strerror or exc}"
        finally:
            if status != 0x0000:
                self._quota.release(size_bytes)
        return _status(status, message)


class _ArrivingBytes:
    """P-DATA bytes per association since its last C-STORE was handled (thread-safe)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._bytes: dict[object, int] = {}

    def add(self, key: object, size_bytes: int) -> bool:
        """Count ``size_bytes``; True when the association is now beyond the limit."""
        with self._lock:
            total = self._bytes.get(key, 0) + size_bytes
            self._bytes[key] = total
            return total > self.limit_bytes

    def forget(self, key: object) -> None:
        with self._lock:
            self._bytes.pop(key, None)


def _status(code: int, message: str) -> Dataset:
    status = Dataset()
    status.Status = code
    if message and not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
        status.ErrorComment = message[:64]  # LO, failures only
    return status
