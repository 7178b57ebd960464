"""Users and API keys: create, list, revoke (the CLI and the demo use these); sign-in.

:func:`authenticate` is the one place a person's password is checked — HTTP Basic, the browser
sign-in and the password re-entered at signing all call it — so the sign-in rate limit
(:mod:`app.services.ratelimit`) applies to every path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import repository as repo
from app.db.models import ApiKey, Role, User, utcnow
from app.services import ratelimit, security
from app.services.ratelimit import SignInLimits, TooManySignInAttemptsError

if TYPE_CHECKING:
    from app.context import ServiceContext

__all__ = ["SignInError", "TooManySignInAttemptsError", "authenticate"]


class AccountError(ValueError):
    """A user or key cannot be created or changed as asked; the message says why."""


class SignInError(Exception):
    """Wrong user name or password (the message never says which)."""


def authenticate(ctx: ServiceContext, username: str, password: str, client: str) -> User:
    """The active user ``username`` if ``password`` is theirs, within the sign-in rate limit.

    ``client`` is the client's address (``request.client.host``; behind a proxy, uvicorn's
    ``--forwarded-allow-ips`` makes it the real one). Raises :class:`SignInError` (401) or
    :class:`TooManySignInAttemptsError` (429, before the password is even checked). A failure is
    recorded in the database, so every replica counts it; nothing secret is recorded.
    """
    limits = SignInLimits.of(ctx.settings)
    plausible = username.isprintable() and 0 < len(username) <= 64
    with ctx.sessions() as session:
        user = repo.user_by_username(session, username) if plausible else None
        known = None if user is None else user.username
        failures = ratelimit.check(session, known, client, limits)
    if user is None:
        security.verify_password(_dummy_hash(), password)  # same time as a known name
        ok = False
    else:
        ok = user.active and security.verify_password(user.password_hash, password)
    if ok and failures == 0:
        assert user is not None
        return user
    with ctx.writer() as session:
        if ok:
            assert user is not None and known is not None
            ratelimit.record_success_after_failures(session, known, client)
        else:
            ratelimit.record_failure(session, known, client)
        session.commit()
    if not ok or user is None:
        raise SignInError("wrong user name or password")
    return user


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


def set_password(session: Session, username: str, password: str, actor: str) -> None:
    user = repo.user_by_username(session, username)
    if user is None:
        raise AccountError(f"user {username!r} does not exist")
    if len(password) < 8:
        raise AccountError("the password is too short: use at least 8 characters")
    user.password_hash = security.hash_password(password)
    user.active = True
    repo.record_audit(
        session, actor=actor, action="password_set", entity="user", entity_id=username
    )


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
