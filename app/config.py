"""Service settings, read from the environment (prefix ``MVCT_GUIDE_``) and overridable by flags."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
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

    # --- scale-out (README "Scale-out") --------------------------------------------------------
    #: where registrations run: "embedded" (warm worker processes inside the service) or "celery"
    #: (``mvct-guide worker`` processes, on any host that shares the database and ``data_dir``)
    queue: Literal["embedded", "celery"] = "embedded"
    #: the Celery broker when ``queue`` is celery: ``redis://host:6379/0`` or ``amqp://user:pw@host//``
    broker_url: str = ""
    #: the broker queue of this service's jobs (several services may share one broker)
    queue_name: str = Field(default="mvct-guide-registrations", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    #: a queued registration running longer than this is stopped (its worker process is ended and
    #: the job taken over by the next delivery)
    job_time_limit_s: float = Field(default=300.0, ge=10)
    #: how often each API replica publishes again jobs the broker may have lost (queue mode)
    queue_sweep_s: float = Field(default=60.0, ge=1)
    #: queue workers write a running job's heartbeat this often; a job without one for
    #: ``job_heartbeat_timeout_s`` is taken over by another worker (app/jobs/heartbeat.py)
    job_heartbeat_s: float = Field(default=2.0, gt=0, le=60)
    job_heartbeat_timeout_s: float = Field(default=15.0, ge=5, le=3600)
    #: orphan files younger than this survive the start-up sweep (another replica may be writing
    #: them); 0 in the embedded default, where one process owns the data directory
    orphan_min_age_s: float | None = Field(default=None, ge=0)

    # --- security -------------------------------------------------------------------------------
    #: failed password checks per user name, and per client address, within ``sign_in_window_s``
    #: after which sign-in answers 429 until the window has passed
    sign_in_max_failures_per_user: int = Field(default=5, ge=1)
    sign_in_max_failures_per_ip: int = Field(default=20, ge=1)
    sign_in_window_s: float = Field(default=900.0, gt=0)
    #: how often refused sign-ins of past minutes are written to the audit trail (one row per
    #: user and minute): each is there at most a minute and this long after it happened
    sign_in_audit_flush_s: float = Field(default=5.0, gt=0, le=60)
    #: Strict-Transport-Security max-age in seconds; 0: not sent (set it only behind HTTPS)
    hsts_max_age_s: int = Field(default=0, ge=0)
    #: the secret of the record chain (app/record_key.py), at least 32 characters; empty: the key
    #: file ``record_key_file`` (default ``<data_dir>/record.key``, created with mode 0600)
    record_key: SecretStr = SecretStr("")
    record_key_file: Path | None = None
    #: reverse proxies whose ``X-Forwarded-For`` names the client (comma-separated addresses or
    #: networks, e.g. ``10.0.0.5,10.1.0.0/16``); empty: the header is ignored (app/proxies.py)
    trusted_proxies: str = ""
    #: serve ``/docs``, ``/redoc`` and ``/openapi.json`` without authentication (the demo does)
    public_docs: bool = False

    # --- DICOM networking (README "DICOM"; app/dicom/) ------------------------------------------
    #: TCP port of the C-STORE SCP started with the service; 0: no SCP (``serve --dicom-port``)
    dicom_port: int = Field(default=0, ge=0, le=65535)
    #: address the SCP listens on (``serve --dicom-host``)
    dicom_host: str = "127.0.0.1"
    dicom_ae_title: str = Field(default="MVCTGUIDE", min_length=1, max_length=16)
    #: calling AE titles allowed to associate, comma-separated, besides the MVCT and planning CT
    #: senders below; an AE title configured nowhere is refused (none configured: every one is)
    dicom_allowed_aes: str = ""
    #: refuse associations whose called AE title is not ``dicom_ae_title``
    dicom_check_called_ae: bool = True
    #: which received CT series are MVCTs and which planning CTs (app/dicom/grouping.py): the
    #: sending AE first (comma-separated lists), then SeriesDescription regular expressions
    #: (case-insensitive, empty: unused), then ``dicom_unmatched_series`` for the rest
    dicom_mvct_aes: str = ""
    dicom_planning_aes: str = ""
    dicom_mvct_pattern: str = "CTrue Image Set"
    dicom_planning_pattern: str = ""
    #: a series no rule identifies: held for a physicist (``unassigned``, GET
    #: /api/v1/dicom/unassigned), taken as an MVCT, or ignored; never a planning CT by itself
    dicom_unmatched_series: Literal["unassigned", "mvct", "ignore"] = "unassigned"
    #: an MVCT whose SeriesDescription matches this regular expression (case-insensitive;
    #: empty: off) is a verification scan of the patient's latest fraction of the same UTC day
    dicom_verification_pattern: str = ""
    #: a received series is complete when its association has ended and no instance came for this
    dicom_quiet_s: float = Field(default=5.0, ge=0, le=3600)
    #: after sign-off, C-STORE the REG to ``AET@host:port``; empty: off
    dicom_reg_destination: str = ""
    #: limits of the receivers (app/dicom/quota.py), refused with Out of Resources (0xA700): one
    #: data set; the inbox backlog (received, not yet used); free disk left for the inbox and DB
    dicom_max_dataset_mb: float = Field(default=64.0, gt=0)
    dicom_inbox_quota_mb: float = Field(default=20_480.0, gt=0)
    dicom_min_free_mb: float = Field(default=2_048.0, ge=0)
    #: received files of a series ingested (it is in the image store) or discarded by a physicist
    #: are removed from the inbox this long after (app/dicom/inbox_retention.py); 0: kept forever
    dicom_inbox_retention_days: float = Field(default=7.0, ge=0)
    #: how often the DICOM inbox (retention) and the planning cache are swept in the background
    disk_sweep_s: float = Field(default=3600.0, ge=1)

    @field_validator("dicom_unmatched_series", mode="before")
    @classmethod
    def _no_planning_ct_by_default(cls, value: object) -> object:
        if value in ("longest", "planning"):
            raise ValueError(
                f"MVCT_GUIDE_DICOM_UNMATCHED_SERIES={value} is no longer accepted: a series no "
                "rule identifies is never made a planning CT (a longer diagnostic CT became a "
                "course that way). Name the planning CT senders in MVCT_GUIDE_DICOM_PLANNING_AES"
                " or MVCT_GUIDE_DICOM_PLANNING_PATTERN; use unassigned, mvct or ignore"
            )
        return value

    # --- review pages (app/web/) ------------------------------------------------------------------
    #: a browser session unused for this long is closed (sign in again)
    session_idle_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    #: a session is closed this long after sign-in, however busy
    session_max_hours: float = Field(default=12.0, gt=0, le=7 * 24)
    #: send the session cookie only over HTTPS (``Secure``, ``__Host-`` prefixed). Set it false
    #: only to serve plain HTTP on localhost (the demo does; ``serve`` refuses other addresses)
    cookie_secure: bool = True
    #: how often the worklist asks for changes
    worklist_poll_seconds: float = Field(default=5.0, ge=1, le=300)
    #: review volumes kept on disk (newest first)
    review_cache_fractions: int = Field(default=64, ge=1, le=10_000)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address or network") from None
        return value

    @model_validator(mode="after")
    def _queue_needs_a_broker(self) -> Settings:
        if self.queue == "celery" and not self.broker_url:
            raise ValueError(
                "MVCT_GUIDE_QUEUE=celery needs MVCT_GUIDE_BROKER_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_its_timeout(self) -> Settings:
        if self.job_heartbeat_s * 3 > self.job_heartbeat_timeout_s:
            raise ValueError(
                f"MVCT_GUIDE_JOB_HEARTBEAT_S ({self.job_heartbeat_s}) must be at most a third of "
                f"MVCT_GUIDE_JOB_HEARTBEAT_TIMEOUT_S ({self.job_heartbeat_timeout_s})"
            )
        return self

    @property
    def orphan_sweep_min_age_s(self) -> float:
        if self.orphan_min_age_s is not None:
            return self.orphan_min_age_s
        return 0.0 if self.queue == "embedded" else 3600.0

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mvct-guide.sqlite3').resolve()}"

    @property
    def resolved_record_key_file(self) -> Path:
        return self.record_key_file or self.data_dir / "record.key"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def idle_seconds(self) -> float:
        return self.session_idle_minutes * 60

    @property
    def max_age_seconds(self) -> float:
        return self.session_max_hours * 3600

    @property
    def cookie_name(self) -> str:
        return "__Host-mvct_guide_session" if self.cookie_secure else "mvct_guide_session"

    @property
    def login_cookie_name(self) -> str:
        """The sign-in form's cookie (app/web/pre_session.py)."""
        return "__Host-mvct_guide_login" if self.cookie_secure else "mvct_guide_login"


def plain_http_refusal(settings: Settings, host: str) -> str | None:
    """Why serving on ``host`` with these settings is refused, or None.

    Cookies without ``Secure`` are only for plain HTTP on this machine (loopback): anywhere else
    the session cookie would cross the network in clear.
    """
    if settings.cookie_secure or is_loopback(host):
        return None
    return (
        f"MVCT_GUIDE_COOKIE_SECURE=false sends session cookies over plain HTTP: allowed only on "
        f"localhost, not on --host {host}; serve HTTPS (behind a TLS proxy) and leave it true"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
