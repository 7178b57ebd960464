"""Server-side browser sessions and the CSRF tokens of their forms.

* The cookie holds 32 random bytes (``secrets.token_urlsafe``); the ``browser_sessions`` row holds
  only their SHA-256, so the table opens no session. The cookie is HttpOnly, SameSite=Strict,
  Path=/, and Secure (``__Host-`` prefixed) unless ``MVCT_GUIDE_COOKIE_SECURE=false``.
* A session is valid while not revoked, used within ``session_idle_minutes`` and younger than
  ``session_max_hours``. It is created at sign-in only (the sign-in form needs none:
  ``pre_session.py``), so no session id exists before sign-in to fix;
  sign-out revokes it; deactivating a user ends all of their sessions at their next request.
* CSRF: every form carries a token made by itsdangerous (``URLSafeTimedSerializer``, HMAC-SHA1
  over the session id and a timestamp) keyed by the session's own random ``csrf_secret``: a
  token from another session, a forged form or an expired page does not verify.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Role, User, utcnow
from app.db.models_signoff import BrowserSession
from app.permissions import Action, roles_for

_CSRF_SALT = "mvct-guide-csrf-v1"
_TOUCH_EVERY = timedelta(seconds=30)
#: roles that may use the review pages (the console is a machine; admins see no patients)
PAGE_ROLES = frozenset(roles_for(Action.USE_PAGES))


@dataclass(frozen=True)
class Viewer:
    """Who is behind a browser session (``user`` None: not signed in yet)."""

    session_id: int
    csrf_secret: str
    user: User | None

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    @property
    def role(self) -> Role | None:
        return None if self.user is None else Role(self.user.role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(db: Session, user_id: int | None) -> tuple[str, BrowserSession]:
    """A new session (the caller commits); returns the cookie token, shown only here."""
    token = secrets.token_urlsafe(32)
    row = BrowserSession(
        token_sha256=_digest(token), user_id=user_id, csrf_secret=secrets.token_hex(32)
    )
    db.add(row)
    db.flush()
    return token, row


def find(db: Session, token: str, settings: Settings, now: datetime | None = None) -> Viewer | None:
    """The valid session of a cookie token, or None (unknown, revoked, idle, too old)."""
    if not token or len(token) > 200:
        return None
    row = db.scalar(select(BrowserSession).where(BrowserSession.token_sha256 == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    now = now or utcnow()
    if now - row.last_seen_at > timedelta(seconds=settings.idle_seconds):
        return None
    if now - row.created_at > timedelta(seconds=settings.max_age_seconds):
        return None
    user = None
    if row.user_id is not None:
        user = db.get(User, row.user_id)
        if user is None or not user.active:
            return None
    return Viewer(row.id, row.csrf_secret, user)


def needs_touch(db: Session, session_id: int, now: datetime | None = None) -> bool:
    row = db.get(BrowserSession, session_id)
    return row is not None and (now or utcnow()) - row.last_seen_at > _TOUCH_EVERY


def touch(db: Session, session_id: int) -> None:
    """Record activity (the caller commits)."""
    db.execute(
        update(BrowserSession).where(BrowserSession.id == session_id).values(last_seen_at=utcnow())
    )


def revoke(db: Session, session_id: int) -> None:
    db.execute(
        update(BrowserSession)
        .where(BrowserSession.id == session_id, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_user_sessions(db: Session, user_id: int) -> int:
    """End every open session of a user (the caller commits); how many were open."""
    result = db.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(BrowserSession.id)
    )
    return len(result.all())


def purge(db: Session, settings: Settings, now: datetime | None = None) -> None:
    """Delete sessions that can never be used again (the audit trail keeps sign-ins)."""
    now = now or utcnow()
    idle_before = now - timedelta(seconds=settings.idle_seconds) - timedelta(days=1)
    old_before = now - timedelta(seconds=settings.max_age_seconds) - timedelta(days=1)
    db.execute(
        delete(BrowserSession).where(
            or_(
                BrowserSession.last_seen_at < idle_before,
                BrowserSession.created_at < old_before,
                BrowserSession.revoked_at < now - timedelta(days=1),
            )
        )
    )


def csrf_token(viewer: Viewer) -> str:
    return _serializer(viewer).dumps(viewer.session_id)


def csrf_valid(viewer: Viewer, token: str | None, max_age_s: float) -> bool:
    if not token or len(token) > 500:
        return False
    try:
        value = _serializer(viewer).loads(token, max_age=int(max_age_s))
    except BadData:
        return False
    return bool(value == viewer.session_id)


def _serializer(viewer: Viewer) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(viewer.csrf_secret, salt=_CSRF_SALT)
