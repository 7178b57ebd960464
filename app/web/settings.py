"""Settings of the review pages, read from the environment like the service's (``MVCT_GUIDE_``).

Kept beside the pages so that the service's :class:`app.config.Settings` stays about the engine;
``create_app`` reads them once (tests replace ``app.state.web_settings``).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVCT_GUIDE_", extra="ignore")

    #: a browser session unused for this long is closed (sign in again)
    session_idle_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    #: a session is closed this long after sign-in, however busy
    session_max_hours: float = Field(default=12.0, gt=0, le=7 * 24)
    #: send the session cookie only over HTTPS (set true behind TLS; the cookie is then
    #: ``__Host-`` prefixed)
    cookie_secure: bool = False
    #: how often the worklist asks for changes
    worklist_poll_seconds: float = Field(default=5.0, ge=1, le=300)
    #: review volumes kept on disk (newest first)
    review_cache_fractions: int = Field(default=64, ge=1, le=10_000)

    @property
    def idle_seconds(self) -> float:
        return self.session_idle_minutes * 60

    @property
    def max_age_seconds(self) -> float:
        return self.session_max_hours * 3600

    @property
    def cookie_name(self) -> str:
        return "__Host-mvct_guide_session" if self.cookie_secure else "mvct_guide_session"
