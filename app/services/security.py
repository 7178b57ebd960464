"""Secrets: argon2 password hashes (argon2-cffi) and API keys stored only as SHA-256 digests.

An API key is ``mvg_<prefix>_<secret>`` with 32 random bytes of secret: with that much entropy a
plain SHA-256 digest cannot be brute-forced, and it lets a request find its key by one indexed
lookup instead of trying an argon2 hash per stored key.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
API_KEY_PREFIX = "mvg_"


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("the password is empty")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, prefix, sha256_hex)``. Show ``key`` once; store the other two."""
    prefix = secrets.token_hex(4)
    key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, api_key_digest(key)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_password() -> str:
    """A random password for demo users and first-time set-up (printed once)."""
    return secrets.token_urlsafe(12)
