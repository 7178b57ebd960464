"""Service settings, read from the environment (prefix ``MVCT_GUIDE_``) and overridable by flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service, the CLI and the workers need to know about their environment.

    ``database_url`` empty means the embedded default: a SQLite file inside ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="MVCT_GUIDE_", extra="ignore")

    data_dir: Path = Path("mvct-guide-data")
    database_url: str = ""
    workers: int = Field(default=2, ge=1, le=64)
    max_upload_mb: float = Field(default=1024.0, gt=0)
    #: prepared planning images each worker keeps in memory (LRU)
    planning_cache_size: int = Field(default=4, ge=1, le=64)
    #: how long ``POST /api/v1/fractions`` waits for the registration before answering 202
    wait_timeout_s: float = Field(default=180.0, ge=0)
    #: a job whose worker died this many times is marked failed instead of re-queued
    max_job_attempts: int = Field(default=3, ge=1)
    default_ptv_margin_mm: float = Field(default=3.0, ge=0, le=50)
    #: prefix of ``review_url``; empty means the URL the request came in on
    public_base_url: str = ""
    #: start (and warm) the worker processes with the service; off only for tests of the HTTP layer
    start_workers: bool = True
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mvct-guide.sqlite3').resolve()}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
