"""The DICOM side of one running service: inbox, grouper, SCP (optional), REG sender (optional),
and the inbox retention sweep that :mod:`app.lifecycle` runs every ``disk_sweep_s``.

Built with the app (:func:`app.main.create_app`, settings checked there) and started and stopped
by :mod:`app.lifecycle` after the database is migrated and the job runner is up.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.context import ServiceContext
from app.db.models_dicom import DicomInstance
from app.dicom import inbox_retention, unassigned
from app.dicom.grouping import InFlight, SeriesGrouper
from app.dicom.inbox import Inbox
from app.dicom.quota import InboxQuota, backlog_bytes, watched_paths
from app.dicom.reg_send import Destination, RegSender
from app.dicom.rules import SeriesRules, ae_titles
from app.dicom.scp import StorageScp

log = logging.getLogger(__name__)


class DicomService:
    def __init__(self, ctx: ServiceContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.inbox = Inbox(settings.data_dir / "dicom-inbox")
        self.quota = InboxQuota(
            settings,
            watched_paths(settings, self.inbox.root),
            lambda: backlog_bytes(ctx.sessions),
        )
        self.in_flight = InFlight()
        self.rules = SeriesRules.from_settings(settings)  # DicomError on a bad pattern or AE
        ae_titles(settings.dicom_allowed_aes)
        self.destination = (
            Destination.parse(settings.dicom_reg_destination)
            if settings.dicom_reg_destination
            else None
        )
        self.grouper = SeriesGrouper(ctx, self.inbox, self.rules, self.in_flight)
        self.scp: StorageScp | None = None
        self.reg_sender: RegSender | None = None

    def start(self) -> None:
        self.inbox.ensure_dirs()
        with self.ctx.sessions() as session:
            referenced = set(session.scalars(select(DicomInstance.file_sha256)))
        removed = self.inbox.sweep(referenced)
        if removed:
            log.warning("removed %d orphan file(s) from the DICOM inbox", removed)
        self.grouper.start()
        if self.ctx.settings.dicom_port:
            self.scp = StorageScp(
                self.ctx.settings,
                self.inbox,
                self.ctx.writer,
                self.in_flight,
                self.grouper.wake,
                quota=self.quota,
            )
            self.scp.start()
        if self.destination is not None:
            self.reg_sender = RegSender(self.ctx, self.destination)
            self.reg_sender.start()

    def assign_held(
        self, series_id: int, as_: str, course_id: int | None, actor: str, note: str
    ) -> unassigned.Decision:
        """A held series assigned (:func:`app.dicom.unassigned.assign`): the API's and the page's
        one way; MVCTs that waited for a course may go now."""
        decision = unassigned.assign(self.ctx, self.inbox, series_id, as_, course_id, actor, note)
        self.grouper.wake()
        return decision

    def sweep_inbox(self) -> inbox_retention.InboxSweep:
        """Remove inbox files kept longer than ``dicom_inbox_retention_days`` after their series
        was ingested or discarded (:mod:`app.dicom.inbox_retention`; 0 days: keep forever)."""
        days = self.ctx.settings.dicom_inbox_retention_days
        if not days:
            return inbox_retention.InboxSweep()
        swept = inbox_retention.sweep(self.inbox, self.ctx.sessions, days)
        inbox_retention.audit(self.ctx.writer, swept, days)
        return swept

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.stop()
            self.scp = None
        if self.reg_sender is not None:
            self.reg_sender.stop()
            self.reg_sender = None
        self.grouper.stop()
