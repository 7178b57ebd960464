"""Sending a signed-off fraction's REG by C-STORE to ``dicom_reg_destination`` (off by default).

``dicom_reg_destination`` is ``AET@host:port``. A thread looks every few seconds for fractions
whose current sign-off (the highest ``signoffs.id``) approves the registration, signed within the
last day, and sends the REG that sign-off gives (:func:`app.dicom.reg_export.reg_for_fraction`)
once per sign-off and destination. Each attempt is a ``dicom_reg_exports`` row (sent, or failed
with the reason) and an audit event; a failed send is tried again, at most
:data:`MAX_ATTEMPTS` times, a minute apart. Older sign-offs are never sent in bulk: their REG is at
``GET /api/v1/fractions/{id}/registration.dcm``. A sent REG whose sign-off is superseded later
is withdrawn by an IHE IOCM rejection note to the same destination (app/dicom/reg_withdraw.py).
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import and_, func, select

from app.context import ServiceContext
from app.db import repository as repo
from app.db.models import utcnow
from app.db.models_dicom import DicomRegExport
from app.db.models_signoff import Decision, Signoff
from app.dicom import DicomError
from app.dicom.reg_export import RegFile, reg_for_fraction
from app.dicom.reg_withdraw import record_attempt, withdraw_due

log = logging.getLogger(__name__)
ACTOR = "system:dicom-export"
MAX_ATTEMPTS = 5
RETRY_AFTER = timedelta(minutes=1)
RECENT = timedelta(days=1)


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``"PACS@10.0.0.5:104"`` → the destination; DicomError naming the text otherwise."""
        try:
            ae_title, address = text.strip().split("@", 1)
            host, port_text = address.rsplit(":", 1)
            port = int(port_text)
        except ValueError:
            raise DicomError(
                f"MVCT_GUIDE_DICOM_REG_DESTINATION {text!r} is not AET@host:port"
            ) from None
        if not (0 < len(ae_title.strip()) <= 16) or not host or not 0 < port < 65536:
            raise DicomError(f"MVCT_GUIDE_DICOM_REG_DESTINATION {text!r} is not AET@host:port")
        return cls(ae_title.strip(), host.strip("[]"), port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def send_reg(reg: RegFile, destination: Destination, calling_ae: str) -> None:
    """C-STORE ``reg`` to ``destination``; DicomError with the reason unless it was stored."""
    store(dcmread(io.BytesIO(reg.data)), destination, calling_ae, "the REG")


def store(dataset: Dataset, destination: Destination, calling_ae: str, what: str) -> None:
    """C-STORE one dataset (a REG, a rejection note); DicomError unless it was stored."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(str(dataset.SOPClassUID), ExplicitVRLittleEndian)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise DicomError(f"{destination} did not accept an association from {calling_ae}")
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1))
    if not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
        comment = getattr(status, "ErrorComment", "")
        shown = f"0x{code:04X}" if code >= 0 else "no answer"
        raise DicomError(f"{destination} refused {what} ({shown} {comment})".strip())


class RegSender:
    """The thread that sends REGs after sign-off (see module docstring)."""

    def __init__(self, ctx: ServiceContext, destination: Destination, poll_s: float = 5.0) -> None:
        self._ctx = ctx
        self._destination = destination
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mvct-guide-reg-send", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("sending REGs failed; trying again")
            self._stop.wait(self._poll_s)

    def run_once(self) -> int:
        """Send what is due; the number of REGs sent."""
        sent = 0
        for fraction_id, signoff_id in self._due():
            if self._send(fraction_id, signoff_id):
                sent += 1
        ae = self._ctx.settings.dicom_ae_title
        withdraw_due(  # REGs whose signature was superseded: tell the destination
            self._ctx,
            str(self._destination),
            lambda note: store(note, self._destination, ae, "the rejection note"),
        )
        return sent

    def _due(self) -> list[tuple[int, int]]:
        now = utcnow()
        destination = str(self._destination)
        latest = select(func.max(Signoff.id).label("id")).group_by(Signoff.fraction_id).subquery()
        query = (
            select(Signoff.fraction_id, Signoff.id)
            .join(latest, latest.c.id == Signoff.id)
            .outerjoin(
                DicomRegExport,
                and_(
                    DicomRegExport.signoff_id == Signoff.id,
                    DicomRegExport.destination == destination,
                ),
            )
            .where(
                Signoff.decision.in_([Decision.APPROVED.value, Decision.APPROVED_ADJUSTED.value]),
                Signoff.signed_at >= now - RECENT,
            )
            .where(
                (DicomRegExport.id.is_(None))
                | (
                    (DicomRegExport.status == "failed")
                    & (DicomRegExport.attempts < MAX_ATTEMPTS)
                    & (DicomRegExport.updated_at <= now - RETRY_AFTER)
                )
            )
            .order_by(Signoff.id)
        )
        with self._ctx.sessions() as session:
            return [(int(f), int(s)) for f, s in session.execute(query).all()]

    def _send(self, fraction_id: int, signoff_id: int) -> bool:
        destination = str(self._destination)
        error: str | None = None
        uid = ""
        try:
            reg = reg_for_fraction(self._ctx, fraction_id)
            uid = reg.sop_instance_uid
            if reg.signoff_id != signoff_id:  # signed again meanwhile: the next round sends it
                return False
            send_reg(reg, self._destination, self._ctx.settings.dicom_ae_title)
        except (DicomError, OSError) as exc:
            error = str(exc)
        with self._ctx.writer() as session:
            row = session.scalar(
                select(DicomRegExport).where(
                    DicomRegExport.signoff_id == signoff_id,
                    DicomRegExport.destination == destination,
                )
            )
            if row is None:
                row = DicomRegExport(
                    fraction_id=fraction_id,
                    signoff_id=signoff_id,
                    destination=destination,
                    attempts=0,
                )
                session.add(row)
            record_attempt(row, uid, error)
            session.flush()
            repo.record_audit(
                session,
                actor=ACTOR,
                action="reg_send_failed" if error else "reg_sent",
                entity="fraction",
                entity_id=fraction_id,
                detail={
                    "destination": destination,
                    "signoff_id": signoff_id,
                    "sop_instance_uid": uid,
                    "attempt": row.attempts,
                    "error": error,
                },
            )
            session.commit()
        if error:
            log.warning("REG of fraction %d not sent to %s: %s", fraction_id, destination, error)
        else:
            log.info("REG of fraction %d sent to %s", fraction_id, destination)
        return error is None
