"""Sign-in rate limit: password checks counted in the database, so every replica agrees.

Every password check (HTTP Basic, the sign-in page, the signature by API or on the review page)
goes through :func:`app.services.accounts.authenticate`, which calls :func:`reserve` *before*
verifying the password: in one transaction holding the limit's lock (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-level advisory lock) it counts and, if the check may go ahead, inserts
a ``pending`` row in ``sign_in_attempts`` — so 30 parallel wrong tries count 30 reservations
and at most ``max_failures_per_user`` of them are ever checked. Afterwards :func:`settle` marks
the row ``failed``, or deletes it on success. Refused (429) when, within the window,

* the *subject* has ``max_failures_per_user`` failures or checks in flight since its last
  success: the typed user name (counted the same whether or not such a user exists, so a 429
  tells nothing about which names exist), or, for a password typed again inside a signed-in
  browser session, that session — a physician locked out by someone else's failures keeps
  signing from the session already open, while a stolen session cannot guess on;
* the client address has ``max_failures_per_ip`` failures (whatever names it tried; not
  applied inside a signed-in session, which has its own limit: a hospital's clients may share
  one NAT address with whoever is guessing).

The failure that locks a subject out writes ``sign_in_locked_out`` to the audit trail (entity
``user`` with the name, or ``client`` with the address) and a WARNING log line. Refused
sign-ins (wrong password and 429 alike) are audited bounded: :func:`flush_audit` writes one
``sign_in_failed`` row per user and minute (``entity_id`` the user name when such a user
exists, else ``(unknown)``), with ``detail`` ``{"minute", "failures", "refused", "clients"}``,
once the minute is over: the service flushes every ``sign_in_audit_flush_s`` (5 s) in the
background (:func:`flush_audit_locked`), so a refused sign-in is in the audit trail at most a
minute and a flush period after it, whether or not anyone signs in again; a password check and
the CLI's ``users list`` flush too. At shutdown the open minute is flushed as well (a replica
still running may then write a second row for that minute). A flood of guesses under one name,
or under names of no user, stays one row per minute however often it is flushed. Nothing
typed is stored: the subject of a name is its SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import repository as repo
from app.db.models import AuditEvent, utcnow
from app.db.models_security import SignInAttempt
from app.errors import ServiceError

log = logging.getLogger(__name__)

FAILED = "sign_in_failed"
SUCCEEDED_AFTER_FAILURES = "sign_in_ok"
LOCKED_OUT = "sign_in_locked_out"
UNKNOWN_USER = "(unknown)"
_ADVISORY_LOCK_KEY = 0x6D766374  # "mvct": serialises reservations on PostgreSQL
_COUNTED_FOR_SUBJECT = ("pending", "failed")
_COUNTED_FOR_CLIENT = ("pending", "failed", "reset")


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


@dataclass(frozen=True)
class Subject:
    """Who a password check counts against (see the module docstring)."""

    key: str
    label: str  #: how a refusal names it: "user name" or "session"

    @classmethod
    def of(cls, typed_name: str, session_id: int | None) -> Subject:
        if session_id is not None:
            return cls(f"s:{session_id}", "session")
        digest = hashlib.sha256(typed_name.encode("utf-8", "replace")).hexdigest()
        return cls(f"u:{digest}", "user name")


def lock(session: Session) -> None:
    """Serialise reservations (SQLite writers already are: BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def reserve(
    session: Session,
    subject: Subject,
    client: str,
    username: str | None,
    limits: SignInLimits,
    now: datetime | None = None,
) -> int:
    """Count and reserve in one step (the caller commits); the pending row's id.

    Raises :class:`TooManySignInAttemptsError` after recording the refusal (the caller must
    commit that too: the exception is raised from inside the transaction).
    """
    now = now or utcnow()
    lock(session)
    flush_audit(session, now, keep=_kept_for(limits))
    try:
        check(session, subject, client, limits, now)
    except TooManySignInAttemptsError:
        session.add(_row(subject, client, username, "refused", now))
        raise
    row = _row(subject, client, username, "pending", now)
    session.add(row)
    session.flush()
    return row.id


def check(
    session: Session,
    subject: Subject,
    client: str,
    limits: SignInLimits,
    now: datetime | None = None,
) -> None:
    """Raise :class:`TooManySignInAttemptsError` if a password check may not even be tried."""
    now = now or utcnow()
    since = now - timedelta(seconds=limits.window_s)
    count, oldest = _counted(
        session, SignInAttempt.subject == subject.key, _COUNTED_FOR_SUBJECT, since
    )
    if count >= limits.max_failures_per_user:
        raise _refusal(f"for this {subject.label}", oldest, now, limits)
    if subject.key.startswith("s:"):  # a session exists only after a right password, and has
        return  # its own limit: others' failures from a shared (NAT) address do not stop it
    count, oldest = _counted(session, SignInAttempt.client == client, _COUNTED_FOR_CLIENT, since)
    if count >= limits.max_failures_per_ip:
        raise _refusal("from this address", oldest, now, limits)


def settle(
    session: Session,
    attempt_id: int,
    ok: bool,
    limits: SignInLimits,
    now: datetime | None = None,
) -> None:
    """After the password check: a failure is counted, a success frees the subject (the caller
    commits). The failure that reaches a limit is audited and logged as a lock-out."""
    now = now or utcnow()
    lock(session)
    row = session.get(SignInAttempt, attempt_id)
    if row is None:  # purged meanwhile (a check that took longer than the window)
        return
    if ok:
        reset = len(
            session.execute(
                update(SignInAttempt)
                .where(SignInAttempt.subject == row.subject, SignInAttempt.state == "failed")
                .values(state="reset")
                .returning(SignInAttempt.id)
            ).all()
        )
        if reset and row.username is not None:
            repo.record_audit(
                session,
                actor=f"user:{row.username}"[:100],
                action=SUCCEEDED_AFTER_FAILURES,
                entity="user",
                entity_id=row.username,
                detail={"client": row.client, "after_failures": reset},
            )
        session.delete(row)
        return
    row.state = "failed"
    session.flush()
    since = now - timedelta(seconds=limits.window_s)
    subject_label = "session" if row.subject.startswith("s:") else "user name"
    for who, states, limit, label in (
        (SignInAttempt.subject == row.subject, ("failed",), limits.max_failures_per_user,
         subject_label),
        (SignInAttempt.client == row.client, ("failed", "reset"), limits.max_failures_per_ip,
         "address"),
    ):  # fmt: skip
        count, _ = _counted(session, who, states, since)
        if count == limit:
            _locked_out(session, row, limits, now, label)


def _locked_out(
    session: Session, row: SignInAttempt, limits: SignInLimits, now: datetime, label: str
) -> None:
    name = row.username or UNKNOWN_USER
    until = now + timedelta(seconds=limits.window_s)
    by_address = label == "address"
    repo.record_audit(
        session,
        actor="system:rate-limit",
        action=LOCKED_OUT,
        entity="client" if by_address else "user",
        entity_id=row.client if by_address else name,
        detail={"scope": label, "client": row.client, "until": until.isoformat()},
    )
    who = (
        f"address {row.client}" if label == "address" else f"{label} of {name} (from {row.client})"
    )
    log.warning(
        "sign-in locked out for %s until %s after failed password checks",
        who,
        until.strftime("%H:%M:%S UTC"),
    )


def flush_audit_locked(
    session: Session, limits: SignInLimits, now: datetime | None = None, *, final: bool = False
) -> int:
    """:func:`flush_audit` under the limit's lock (the background flush; the caller commits).

    ``final`` (at shutdown): the open minute too, up to ``now``."""
    lock(session)
    return flush_audit(session, now, keep=_kept_for(limits), include_open_minute=final)


def flush_audit(
    session: Session,
    now: datetime | None = None,
    keep: timedelta = timedelta(days=1),
    *,
    include_open_minute: bool = False,
) -> int:
    """Sum up the refused checks of every minute that is over (``include_open_minute``: and of
    the minute of ``now``, up to ``now``): one ``sign_in_failed`` audit row per user and minute
    (the caller commits). Returns how many rows were written; deletes attempts older than
    ``keep`` (longer than the window) that are audited or never settled."""
    now = now or utcnow()
    rows = session.scalars(select(SignInAttempt).where(*_to_audit(now, include_open_minute))).all()
    groups: dict[tuple[str, str], list[SignInAttempt]] = defaultdict(list)
    for row in rows:
        groups[(row.username or UNKNOWN_USER, row.at.strftime("%Y-%m-%dT%H:%MZ"))].append(row)
    for (name, minute), members in sorted(groups.items(), key=lambda item: item[0][1]):
        repo.record_audit(
            session,
            actor="system:rate-limit",
            action=FAILED,
            entity="user",
            entity_id=name,
            detail={
                "minute": minute,
                "failures": sum(m.state != "refused" for m in members),
                "refused": sum(m.state == "refused" for m in members),
                "clients": sorted({m.client for m in members})[:10],
            },
        )
        for member in members:
            member.audited = True
    session.execute(
        delete(SignInAttempt).where(
            SignInAttempt.at < now - keep,
            SignInAttempt.audited.is_(True) | (SignInAttempt.state == "pending"),
        )
    )
    return len(groups)


def audit_pending(session: Session, now: datetime, include_open_minute: bool = False) -> bool:
    """Whether :func:`flush_audit` has anything to write (a read: no lock, no write)."""
    query = select(SignInAttempt.id).where(*_to_audit(now, include_open_minute)).limit(1)
    return session.scalar(query) is not None


def _to_audit(now: datetime, include_open_minute: bool) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the attempts :func:`flush_audit` sums up."""
    minute_start = now.replace(second=0, microsecond=0)
    until = SignInAttempt.at <= now if include_open_minute else SignInAttempt.at < minute_start
    return (
        SignInAttempt.audited.is_(False),
        SignInAttempt.state.in_(("failed", "reset", "refused")),
        until,
    )


def _kept_for(limits: SignInLimits) -> timedelta:
    """How long attempts stay in ``sign_in_attempts``: a day, or twice the window if longer."""
    return max(timedelta(days=1), 2 * timedelta(seconds=limits.window_s))


def _row(
    subject: Subject, client: str, username: str | None, state: str, now: datetime
) -> SignInAttempt:
    return SignInAttempt(
        at=now,
        subject=subject.key,
        client=client[:100],
        username=username,
        state=state,
        audited=False,
    )


def _counted(
    session: Session, who: object, states: tuple[str, ...], since: datetime
) -> tuple[int, datetime | None]:
    """How many attempts of ``who`` in ``states`` since ``since``, and the oldest one's time."""
    count, oldest = session.execute(
        select(func.count(), func.min(SignInAttempt.at)).where(
            who,  # type: ignore[arg-type]
            SignInAttempt.state.in_(states),
            SignInAttempt.at > since,
        )
    ).one()
    return int(count), oldest


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


def locked_out_users(session: Session, settings: Settings) -> dict[str, datetime]:
    """User name → when its latest lock-out ends, for lock-outs that have not ended yet."""
    now = utcnow()
    window = timedelta(seconds=SignInLimits.of(settings).window_s)
    rows = session.execute(
        select(AuditEvent.entity_id, func.max(AuditEvent.at))
        .where(
            AuditEvent.action == LOCKED_OUT,
            AuditEvent.entity == "user",
            AuditEvent.at > now - window,
        )
        .group_by(AuditEvent.entity_id)
    ).all()
    return {str(name): at + window for name, at in rows if name != UNKNOWN_USER}
