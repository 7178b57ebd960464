"""Users and API keys: create, list, revoke (the CLI and the demo use these)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import security
from app.db import repository as repo
from app.db.models import ApiKey, Role, User, utcnow


class AccountError(ValueError):
    """A user or key cannot be created or changed as asked; the message says why."""


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
