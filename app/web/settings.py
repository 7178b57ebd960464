"""Settings of the review pages, read from the environment like the service's (``MVCT_GUIDE_``).

Kept beside the pages so that the service's :class:`app.config.Settings` stays about the engine;
``create_app`` reads them once (tests replace ``app.state.web_settings``).
"""

from __future__ import annotations

import ipaddress

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MVCT_GUIDE_", extra="ignore")

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


def plain_http_refusal(settings: WebSettings, host: str) -> str | None:
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
