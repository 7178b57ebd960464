"""The long-lived objects of one running service, built by :func:`app.main.create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.housekeeping import Housekeeper
from app.jobs.embedded import Jobs
from app.jobs.pool import WorkerPool
from app.storage import ImageStore


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]  #: reading
    writer: sessionmaker[Session]  #: transactions that write (BEGIN IMMEDIATE on SQLite)
    store: ImageStore
    pool: WorkerPool | None = None
    jobs: Jobs | None = None  #: the embedded JobRunner, or QueueJobs in scale-out mode
    housekeeper: Housekeeper | None = None  #: the background chores (app/housekeeping.py)
