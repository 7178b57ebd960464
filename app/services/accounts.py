"""Users and API keys: create, list, revoke (the CLI and the demo use these); sign-in.

:func:`authenticate` is the one place a person's password is checked — HTTP Basic, the browser
sign-in and the password re-entered at signing all call it — so the sign-in rate limit
(:mod:`app.services.ratelimit`) applies to every path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import ApiKey, Role, User, utcnow
from app.db.models_signoff import BrowserSession
from app.services import ratelimit, security
from app.services.ratelimit import SignInLimits, TooManySignInAttemptsError

if TYPE_CHECKING:
    from app.context import ServiceContext

__all__ = ["SignInError", "TooManySignInAttemptsError", "authenticate"]


class AccountError(ValueError):
    """A user or key cannot be created or changed as asked; the message says why."""


class SignInError(Exception):
    """Wrong user name or password (the message never says which)."""


def authenticate(
    ctx: ServiceContext,
    username: str,
    password: str,
    client: str,
    *,
    session_id: int | None = None,
    roles: frozenset[Role] | None = None,
) -> User:
    """The active user ``username`` if ``password`` is theirs, within the sign-in rate limit.

    The one password check of the service: HTTP Basic, the sign-in page, and the password typed
    again to sign (by API and on the review page) all call it. ``client`` is the client's
    address (:func:`app.proxies.client_address`). ``session_id``: the password is typed inside
    that signed-in browser session, and counts against the session instead of the user name
    (:mod:`app.services.ratelimit`). ``roles``: the user must have one of them. A wrong password, an
    unknown or inactive user and a role not in ``roles`` all raise the same
    :class:`SignInError` (401) after the same work (one argon2 verification, one counted
    attempt); :class:`TooManySignInAttemptsError` (429) before any password is checked.
    """
    limits = SignInLimits.of(ctx.settings)
    plausible = username.isprintable() and 0 < len(username) <= 64
    subject = ratelimit.Subject.of(username[:1024], session_id)
    with ctx.writer() as session:
        user = repo.user_by_username(session, username) if plausible else None
        known = None if user is None else user.username
        try:
            attempt = ratelimit.reserve(session, subject, client, known, limits)
        finally:
            session.commit()  # the reservation, or the recorded refusal
    password_hash = _dummy_hash() if user is None else user.password_hash
    ok = security.verify_password(password_hash, password[:4096])  # same cost for any name
    ok = ok and user is not None and user.active and (roles is None or Role(user.role) in roles)
    with ctx.writer() as session:
        ratelimit.settle(session, attempt, ok, limits)
        session.commit()
    if not ok or user is None:
        raise SignInError("wrong user name or password")
    return user


def flush_sign_in_audit(ctx: ServiceContext, *, final: bool = False) -> int:
    """Refused sign-ins of the minutes that are over into the audit trail (``final``, at
    shutdown: of the open minute too); how many ``sign_in_failed`` rows were written. The service
    calls it every ``sign_in_audit_flush_s`` (:mod:`app.housekeeping`) and when it stops: a
    read first, so that a quiet service takes no write lock every few seconds."""
    now = utcnow()
    with ctx.sessions() as session:
        if not ratelimit.audit_pending(session, now, include_open_minute=final):
            return 0
    with ctx.writer() as session:
        limits = SignInLimits.of(ctx.settings)
        written = ratelimit.flush_audit_locked(session, limits, now, final=final)
        session.commit()
    return written


_dummy: list[str] = []


def _dummy_hash() -> str:
    """A hash no password matches, to check unknown user names against (same cost, no oracle)."""
    if not _dummy:
        _dummy.append(security.hash_password(security.new_password()))
    return _dummy[0]


def add_user(
    session: Session, username: str, role: Role, full_name: str, password: str, actor: str
) -> User:
    if not username or len(username) > 64 or not username.isprintable() or ":" in username:
        raise AccountError(
            f"user name {username!r} is not valid: 1-64 printable characters, no ':'"
        )
    if len(password) < 8:
        raise AccountError("the password is too short: use at least 8 characters")
    if repo.user_by_username(session, username) is not None:
        raise AccountError(f"user {username!r} exists already")
    user = User(
        username=username,
        full_name=full_name,
        role=role.value,
        password_hash=security.hash_password(password),
    )
    session.add(user)
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action="user_added",
        entity="user",
        entity_id=username,
        detail={"role": role.value, "full_name": full_name},
    )
    return user


def set_password(session: Session, username: str, password: str, actor: str) -> int:
    """Set a user's password and end their open browser sessions (how many)."""
    user = repo.user_by_username(session, username)
    if user is None:
        raise AccountError(f"user {username!r} does not exist")
    if len(password) < 8:
        raise AccountError("the password is too short: use at least 8 characters")
    user.password_hash = security.hash_password(password)  # an inactive user stays inactive
    ended = end_sessions(session, user.id)
    repo.record_audit(
        session,
        actor=actor,
        action="password_set",
        entity="user",
        entity_id=username,
        detail={"sessions_ended": ended},
    )
    return ended


def set_active(session: Session, username: str, active: bool, actor: str) -> int:
    """Deactivate (or reactivate) a user; deactivating ends their open browser sessions.

    A deactivated user cannot sign in, sign, or use a session (``app.web.sessions.find`` checks
    ``active`` at every request). Returns how many sessions were ended.
    """
    user = repo.user_by_username(session, username)
    if user is None:
        raise AccountError(f"user {username!r} does not exist")
    user.active = active
    ended = 0 if active else end_sessions(session, user.id)
    repo.record_audit(
        session,
        actor=actor,
        action="user_reactivated" if active else "user_deactivated",
        entity="user",
        entity_id=username,
        detail={"sessions_ended": ended},
    )
    return ended


def end_sessions(session: Session, user_id: int) -> int:
    """Revoke every open browser session of a user (the caller commits); how many were open."""
    result = session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(BrowserSession.id)
    )
    return len(result.all())


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.username)).all()


def create_api_key(session: Session, name: str, role: Role, actor: str) -> str:
    """Store a new key's digest and return the key itself (shown once, never stored)."""
    if not name or len(name) > 64 or not name.isprintable():
        raise AccountError(f"key name {name!r} is not valid: 1-64 printable characters")
    if repo.api_key_by_name(session, name) is not None:
        raise AccountError(
            f"an API key named {name!r} exists already; choose another name or revoke it"
        )
    key, prefix, digest = security.new_api_key()
    session.add(ApiKey(name=name, role=role.value, key_sha256=digest, key_prefix=prefix))
    session.flush()
    repo.record_audit(
        session,
        actor=actor,
        action="api_key_created",
        entity="api_key",
        entity_id=name,
        detail={"role": role.value, "prefix": prefix},
    )
    return key


def revoke_api_key(session: Session, name: str, actor: str) -> None:
    key = repo.api_key_by_name(session, name)
    if key is None:
        raise AccountError(f"there is no API key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        # free the name for a successor; the digest stays so the old key keeps failing
        key.name = f"{name[:40]}~revoked~{key.id}"
        repo.record_audit(
            session, actor=actor, action="api_key_revoked", entity="api_key", entity_id=name
        )


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.name)).all()
