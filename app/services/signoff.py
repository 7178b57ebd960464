"""Signing a fraction's decision: the same checks for the review page and for API clients.

A signature is a physician's user name and password, given again at the moment of signing
(21 CFR Part 11 §11.200: both components at each signing outside a continuous session — here at
every signing). Every attempt is audited, refused or not — a refused password in the bounded
sign-in audit (one row per user and minute, :mod:`app.services.ratelimit`), any other refusal
and every signature in a row of its own; a refused attempt signs nothing.

Rules, in order:

1. the password is checked by :func:`app.services.accounts.authenticate`, the one password
   check of the service, with the sign-in rate limit (429): a wrong password, an unknown or
   inactive user and a user who is not a physician all get the same 401 and the same words;
2. the fraction exists (404); approving needs a registration result (409);
3. a fraction already signed is signed again only by naming the latest signature
   (``supersedes``, else 409: a stale page) and giving a reason (422);
4. ``approved`` with a correction that differs from the registration's (by more than 0.005 mm or
   0.005°) is stored as ``approved_adjusted``; a correction that the machine cannot apply
   (a rotation on a 3- or 4-DOF couch) is refused (422);
5. a reason is required when adjusting, when rejecting, and when any signed translation is
   5 mm or more (``override_large_shift``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.context import ServiceContext
from app.db import repository as repo
from app.db import signoff_repo
from app.db.models import Fraction, User, utcnow
from app.db.models_signoff import MEANINGS, Decision, Signoff
from app.errors import ConflictError, NotFoundError, ServiceError, UnprocessableError
from app.permissions import Action, roles_for
from app.services import accounts
from app.services.supersede import check_supersedes
from registration.couch import CouchCorrection, Dof

LARGE_SHIFT_MM = 5.0
MAX_REASON_CHARS = 2000
_TOLERANCE = 0.005
_AXES = CouchCorrection.AXES


class SignatureRefusedError(ServiceError):
    """401: wrong user name or password, or not a physician; nothing was signed."""

    status_code = 401


REFUSED = (
    "wrong user name or password, or not allowed to sign: nothing was signed. Enter your own "
    "password again (only a physician can sign)."
)
SIGNERS = frozenset(roles_for(Action.SIGN_OFF))


@dataclass(frozen=True)
class SignRequest:
    fraction_id: int
    username: str
    password: str
    decision: str  #: "approved" or "rejected"
    reason: str | None = None
    #: the correction to sign; None: the registration's (as the machine applies it)
    correction: CouchCorrection | None = None
    #: the id of the fraction's latest signature, which this one replaces (None: the first)
    supersedes: int | None = None
    #: the client's address (the rate limit counts it)
    client: str = "unknown"
    #: the signed-in browser session the password was typed in (app.services.ratelimit), if any
    session_id: int | None = None


@dataclass(frozen=True)
class Signed:
    signoff: Signoff
    signer: User


def sign(ctx: ServiceContext, request: SignRequest, actor: str) -> Signed:
    """Check and store one signature (see the module docstring); raises ServiceError."""
    actor = _printable(actor)[:80]  # it may carry a typed user name: never store NUL or controls
    try:
        user = accounts.authenticate(
            ctx,
            request.username,
            request.password,
            request.client,
            session_id=request.session_id,
            roles=SIGNERS,
        )
    except accounts.SignInError:  # counted and audited (bounded) by the rate limit
        raise SignatureRefusedError(REFUSED) from None
    with ctx.writer() as session:
        try:
            signer = session.get_one(User, user.id)
            signed = _sign(session, request, signer)
        except ServiceError as exc:
            session.rollback()
            repo.record_audit(
                session,
                actor=actor,
                action="signoff_refused",
                entity="fraction",
                entity_id=request.fraction_id,
                detail={
                    "username": _printable(request.username)[:64],
                    "decision": _printable(request.decision)[:32],
                    "status": exc.status_code,
                    "why": exc.detail,
                },
            )
            session.commit()
            raise
        repo.record_audit(
            session,
            actor=actor,
            action="signed_off",
            entity="fraction",
            entity_id=request.fraction_id,
            detail={
                "signoff_id": signed.id,
                "signer": signer.username,
                "decision": signed.decision,
                "meaning": signed.meaning,
                "couch_correction": _correction_dict(signoff_repo.signed_correction(signed)),
                "override_large_shift": signed.override_large_shift,
                "record_sha256": signed.record_sha256,
                "supersedes": signed.supersedes_id,
            },
        )
        session.commit()
        return Signed(signed, signer)


def _sign(session: Session, request: SignRequest, signer: User) -> Signoff:
    fraction = repo.fraction_by_id(session, request.fraction_id)
    if fraction is None:
        raise NotFoundError(f"fraction {request.fraction_id} does not exist")
    reason = (request.reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise UnprocessableError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    supersedes = check_supersedes(session, fraction.id, request.supersedes, reason)
    if request.decision == Decision.REJECTED.value:
        if reason is None:
            raise UnprocessableError(
                "give a reason for rejecting (for example: re-image, re-set-up the patient)"
            )
        return _store(session, fraction, signer, Decision.REJECTED, None, reason, False, supersedes)
    if request.decision != Decision.APPROVED.value:
        raise UnprocessableError(
            f"decision {request.decision!r} is not valid: use 'approved' or 'rejected'"
        )
    proposed = _proposed(fraction)
    correction = (request.correction or proposed).rounded()
    adjusted = _differs(correction, proposed)
    _check_machine_can_apply(correction, fraction.dof)
    large = correction.max_abs_translation_mm() >= LARGE_SHIFT_MM
    if adjusted and reason is None:
        raise UnprocessableError("give a reason for adjusting the couch correction")
    if large and reason is None:
        raise UnprocessableError(
            f"a couch translation of {LARGE_SHIFT_MM:g} mm or more needs an explicit override: "
            "give the reason for treating with this shift"
        )
    decision = Decision.APPROVED_ADJUSTED if adjusted else Decision.APPROVED
    return _store(session, fraction, signer, decision, correction, reason, large, supersedes)


def _proposed(fraction: Fraction) -> CouchCorrection:
    if fraction.result is None:
        raise ConflictError(
            f"fraction {fraction.id} has no registration result (status {fraction.job.status}): "
            "wait for the registration, or reject the fraction"
        )
    return fraction.result.engine_result.couch_correction


def _differs(a: CouchCorrection, b: CouchCorrection) -> bool:
    return any(abs(getattr(a, axis) - getattr(b, axis)) > _TOLERANCE for axis in _AXES)


def _check_machine_can_apply(correction: CouchCorrection, dof: int) -> None:
    fixed = {
        Dof.TRANSLATIONS: ("pitch_deg", "roll_deg", "yaw_deg"),
        Dof.TRANSLATIONS_ROLL: ("pitch_deg", "yaw_deg"),
        Dof.SIX: (),
    }[Dof(dof)]
    moved = [axis.removesuffix("_deg") for axis in fixed if abs(getattr(correction, axis)) > 0]
    if moved:
        raise UnprocessableError(
            f"this fraction's couch corrects {dof} degrees of freedom: {', '.join(moved)} must be "
            "0 in the signed correction"
        )


def _store(
    session: Session,
    fraction: Fraction,
    signer: User,
    decision: Decision,
    correction: CouchCorrection | None,
    reason: str | None,
    override: bool,
    supersedes: int | None,
) -> Signoff:
    values = _correction_dict(correction) or dict.fromkeys(_AXES)
    signoff = Signoff(
        fraction_id=fraction.id,
        decision=decision.value,
        reason=reason,
        override_large_shift=override,
        signer_user_id=signer.id,
        printed_name=signer.full_name or signer.username,
        meaning=MEANINGS[decision],
        signed_at=utcnow(),
        supersedes_id=supersedes,
        **values,
    )
    return signoff_repo.add_signoff(session, signoff, fraction, signer)


def _correction_dict(correction: CouchCorrection | None) -> dict[str, float] | None:
    return None if correction is None else correction.as_dict()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)
