"""Starting and stopping a service: migrate, sweep the store, warm the workers, resume jobs,
keep house (:mod:`app.housekeeping`: the sign-in audit flush, the DICOM inbox retention sweep,
the planning cache sweep), and flush the sign-in audit at the end.

With ``MVCT_GUIDE_QUEUE=celery`` the service starts no worker processes: it publishes jobs to the
broker for ``mvct-guide worker`` processes, and several replicas may share one database and data
directory (migrations are serialised by a PostgreSQL advisory lock, and the start-up sweep spares
files younger than ``orphan_sweep_min_age_s``, which another replica may be writing).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

from app.config import Settings
from app.context import ServiceContext
from app.db import migrate, record_chain
from app.db import repository as repo
from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.housekeeping import Chore, Housekeeper
from app.jobs import planning_cache
from app.jobs.dispatch import QueueJobs
from app.jobs.embedded import JobRunner
from app.jobs.locks import shared_lock
from app.jobs.pool import WorkerPool
from app.record_key import record_key_for
from app.services.accounts import flush_sign_in_audit
from app.storage import ImageStore

if TYPE_CHECKING:
    from app.dicom.service import DicomService

log = logging.getLogger(__name__)


def build_context(settings: Settings, pool: WorkerPool | None = None) -> ServiceContext:
    """The service's objects; nothing connects or starts yet."""
    engine = make_engine(
        settings.resolved_database_url(), sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    # replicas share the store only in queue mode: then its locks must hold across processes
    shared = None if settings.queue == "embedded" else shared_lock(engine, settings.data_dir)
    sessions, writer = make_session_factory(engine), make_writer_factory(engine)
    key = functools.cache(lambda: record_key_for(settings))  # read or made at start, not here
    record_chain.install(sessions, key)
    record_chain.install(writer, key)
    return ServiceContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        writer=writer,
        store=ImageStore(settings.images_dir, settings.tmp_dir, shared),
        pool=pool,
    )


def prepare_storage(ctx: ServiceContext) -> None:
    """Create the data directory, migrate the database, remove orphan files."""
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx.store.ensure_dirs()
    with _migration_lock(ctx.engine):
        migrate.upgrade(ctx.engine)
    with ctx.sessions() as session:
        record_chain.key_of(session)  # a missing or short key stops the start, with its reason
    record_chain.link_unlinked_rows(ctx.writer)
    with ctx.sessions() as session:
        referenced = repo.all_series_hashes(session)
    removed = ctx.store.sweep(referenced, min_age_s=ctx.settings.orphan_sweep_min_age_s)
    if removed:
        log.warning("removed %d orphan item(s) from the data directory", len(removed))


def start(ctx: ServiceContext, dicom: DicomService | None = None) -> bool:
    """Prepare storage, start (or adopt) the worker pool and the job runner.

    Returns True when this call started the pool (and :func:`stop` should shut it down).
    """
    prepare_storage(ctx)
    owns_pool = False
    if ctx.settings.start_workers and ctx.settings.queue == "celery":
        ctx.jobs = _queue_jobs(ctx)
        ctx.jobs.start()
    elif ctx.settings.start_workers:
        if ctx.pool is None:
            ctx.pool = WorkerPool(ctx.settings.workers, ctx.settings.planning_cache_size)
            owns_pool = True
        ctx.pool.start()
        ctx.jobs = JobRunner(
            ctx.sessions,
            ctx.writer,
            ctx.store,
            ctx.pool,
            max_attempts=ctx.settings.max_job_attempts,
        )
        ctx.jobs.start()
    if dicom is not None:  # inbox, grouper; the SCP when dicom_port is set (app/dicom/service.py)
        dicom.start()
    ctx.housekeeper = Housekeeper(_chores(ctx, dicom))
    ctx.housekeeper.start()
    return owns_pool


def stop(ctx: ServiceContext, owns_pool: bool, dicom: DicomService | None = None) -> None:
    if ctx.housekeeper is not None:
        ctx.housekeeper.stop()
        ctx.housekeeper = None
        _final_audit_flush(ctx)
    if dicom is not None:
        dicom.stop()
    if ctx.jobs is not None:
        ctx.jobs.stop()
        ctx.jobs = None
    if owns_pool and ctx.pool is not None:
        ctx.pool.shutdown()
        ctx.pool = None
    ctx.engine.dispose()


def _chores(ctx: ServiceContext, dicom: DicomService | None) -> list[Chore]:
    settings = ctx.settings
    chores = [
        Chore(
            "the sign-in audit flush",
            settings.sign_in_audit_flush_s,
            functools.partial(flush_sign_in_audit, ctx),
        ),
    ]
    if dicom is not None:
        chores.append(Chore("the DICOM inbox sweep", settings.disk_sweep_s, dicom.sweep_inbox))
    chores.append(
        Chore(
            "the planning cache sweep",
            settings.disk_sweep_s,
            functools.partial(planning_cache.sweep_unreferenced, ctx.store, ctx.sessions),
        )
    )
    return chores


def _final_audit_flush(ctx: ServiceContext) -> None:
    """Refused sign-ins of the open minute too: no flush would come for them after this."""
    try:
        flush_sign_in_audit(ctx, final=True)
    except Exception:  # the database is gone: they stay counted and are flushed at next start
        log.exception("refused sign-ins could not be written to the audit trail at shutdown")


def _queue_jobs(ctx: ServiceContext) -> QueueJobs:
    from app.jobs.celery_app import make_celery, preparation_publisher, publisher

    celery = make_celery(ctx.settings)
    return QueueJobs(
        ctx.sessions,
        publisher(celery, ctx.settings.queue_name),
        sweep_s=ctx.settings.queue_sweep_s,
        stale_after_s=ctx.settings.job_heartbeat_timeout_s,
        check_s=ctx.settings.job_heartbeat_s,
        publish_preparation=preparation_publisher(celery, ctx.settings.queue_name),
    )


_MIGRATION_LOCK_KEY = 0x6D766374  # "mvct": one key for every mvct-guide process


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, one replica migrates at a time (the others then find nothing to do)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
            connection.commit()
