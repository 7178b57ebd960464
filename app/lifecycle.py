"""Starting and stopping a service: migrate, sweep the store, warm the workers, resume jobs."""

from __future__ import annotations

import logging

from app.config import Settings
from app.context import ServiceContext
from app.db import migrate
from app.db import repository as repo
from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.jobs import JobRunner
from app.pool import WorkerPool
from app.storage import ImageStore

log = logging.getLogger(__name__)


def build_context(settings: Settings, pool: WorkerPool | None = None) -> ServiceContext:
    """The service's objects; nothing connects or starts yet."""
    engine = make_engine(
        settings.resolved_database_url(), sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    return ServiceContext(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        writer=make_writer_factory(engine),
        store=ImageStore(settings.images_dir, settings.tmp_dir),
        pool=pool,
    )


def prepare_storage(ctx: ServiceContext) -> None:
    """Create the data directory, migrate the database, remove orphan files."""
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx.store.ensure_dirs()
    migrate.upgrade(ctx.engine)
    with ctx.sessions() as session:
        referenced = repo.all_series_hashes(session)
    removed = ctx.store.sweep(referenced)
    if removed:
        log.warning("removed %d orphan item(s) from the data directory", len(removed))


def start(ctx: ServiceContext) -> bool:
    """Prepare storage, start (or adopt) the worker pool and the job runner.

    Returns True when this call started the pool (and :func:`stop` should shut it down).
    """
    prepare_storage(ctx)
    owns_pool = False
    if ctx.settings.start_workers:
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
    return owns_pool


def stop(ctx: ServiceContext, owns_pool: bool) -> None:
    if ctx.jobs is not None:
        ctx.jobs.stop()
        ctx.jobs = None
    if owns_pool and ctx.pool is not None:
        ctx.pool.shutdown()
        ctx.pool = None
    ctx.engine.dispose()
