"""Sign-in rate limit: failed password checks, counted in the database so every replica agrees.

Every failed password check is written to the append-only audit trail as ``sign_in_failed``
(entity ``user``; ``entity_id`` the user name when such a user exists, else ``(unknown)`` — a
mistyped password pasted into the name field is never stored; ``detail.client`` the client
address). Before a password is checked, :func:`check` refuses (429) when, within the window,

* the user name has failed ``max_failures_per_user`` times since its last successful sign-in, or
* the client address has failed ``max_failures_per_ip`` times (whatever names it tried).

A successful sign-in that follows failures writes ``sign_in_ok``, which starts the user's count
again. The refusal holds until the oldest counted failure leaves the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import repository as repo
from app.db.models import AuditEvent, utcnow
from app.errors import ServiceError

FAILED = "sign_in_failed"
SUCCEEDED_AFTER_FAILURES = "sign_in_ok"
UNKNOWN_USER = "(unknown)"


class TooManySignInAttemptsError(ServiceError):
    """429: too many failed sign-ins for this user name or from this address."""

    status_code = 429

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SignInLimits:
    max_failures_per_user: int = 5
    max_failures_per_ip: int = 20
    window_s: float = 900.0

    @classmethod
    def of(cls, settings: Settings) -> SignInLimits:
        return cls(
            settings.sign_in_max_failures_per_user,
            settings.sign_in_max_failures_per_ip,
            settings.sign_in_window_s,
        )


def check(
    session: Session,
    username: str | None,
    client: str,
    limits: SignInLimits,
    now: datetime | None = None,
) -> int:
    """Raise :class:`TooManySignInAttemptsError` if this sign-in may not even be tried.

    ``username`` is None for a name no user has. Returns the user's counted failures.
    """
    now = now or utcnow()
    window_start = now - timedelta(seconds=limits.window_s)
    user_failures = 0
    if username is not None:
        since = max(window_start, _last_success(session, username) or window_start)
        user_failures, oldest = _failures(
            session, AuditEvent.entity_id == username, since, limits.max_failures_per_user
        )
        if user_failures >= limits.max_failures_per_user:
            raise _refusal("for this user name", oldest, now, limits)
    ip_failures, oldest = _failures(
        session,
        AuditEvent.detail["client"].as_string() == client,
        window_start,
        limits.max_failures_per_ip,
    )
    if ip_failures >= limits.max_failures_per_ip:
        raise _refusal("from this address", oldest, now, limits)
    return user_failures


def record_failure(session: Session, username: str | None, client: str) -> None:
    repo.record_audit(
        session,
        actor=f"client:{client}"[:100],
        action=FAILED,
        entity="user",
        entity_id=username or UNKNOWN_USER,
        detail={"client": client},
    )


def record_success_after_failures(session: Session, username: str, client: str) -> None:
    repo.record_audit(
        session,
        actor=f"user:{username}"[:100],
        action=SUCCEEDED_AFTER_FAILURES,
        entity="user",
        entity_id=username,
        detail={"client": client},
    )


def _last_success(session: Session, username: str) -> datetime | None:
    return session.scalar(
        select(func.max(AuditEvent.at)).where(
            AuditEvent.action == SUCCEEDED_AFTER_FAILURES, AuditEvent.entity_id == username
        )
    )


def _failures(
    session: Session, who: object, since: datetime, limit: int
) -> tuple[int, datetime | None]:
    """How many failures of ``who`` since ``since`` (counting up to ``limit``), and the time of
    the one whose leaving the window lifts a refusal."""
    times = session.scalars(
        select(AuditEvent.at)
        .where(AuditEvent.action == FAILED, AuditEvent.at > since, who)  # type: ignore[arg-type]
        .order_by(AuditEvent.at.desc())
        .limit(limit)
    ).all()
    return len(times), (times[-1] if times else None)


def _refusal(
    what: str, oldest: datetime | None, now: datetime, limits: SignInLimits
) -> TooManySignInAttemptsError:
    window_end = (oldest or now) + timedelta(seconds=limits.window_s)
    retry_after_s = max(1, math.ceil((window_end - now).total_seconds()))
    minutes = max(1, math.ceil(retry_after_s / 60))
    return TooManySignInAttemptsError(
        f"too many failed sign-ins {what}: wait {minutes} minute(s) and try again, or ask an "
        "administrator to check the account",
        retry_after_s,
    )
