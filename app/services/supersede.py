"""A signature never replaces another silently: it names the one it supersedes.

The current signature of a fraction is its latest (highest id). A new signature on a fraction
that is already signed must name that latest signature (``supersedes``) and give a reason; a
page that shows an older signature (or none, when there is one now) is stale and gets 409, so two
physicians signing the same fraction at once cannot both win. The fraction's row is locked for
the check (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writers hold the database lock).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import signoff_repo
from app.db.models import Fraction
from app.errors import ConflictError, UnprocessableError


def check_supersedes(
    session: Session, fraction_id: int, supersedes: int | None, reason: str | None
) -> int | None:
    """The id the new signature supersedes (None: the first), or 409 / 422 saying what to do."""
    session.execute(select(Fraction.id).where(Fraction.id == fraction_id).with_for_update())
    latest = signoff_repo.latest_signoffs(session, [fraction_id]).get(fraction_id)
    if latest is None:
        if supersedes is not None:
            raise ConflictError(
                f"fraction {fraction_id} has no signature, so supersedes={supersedes} is stale: "
                "reload the page and sign again"
            )
        return None
    shown = (
        f"signature {latest.id}: {latest.decision.replace('_', ' ')} by {latest.printed_name} "
        f"at {latest.signed_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    if supersedes is None:
        raise ConflictError(
            f"fraction {fraction_id} is already signed ({shown}): to replace that signature, "
            f"send supersedes={latest.id} with a reason; nothing was signed"
        )
    if supersedes != latest.id:
        raise ConflictError(
            f"the page is stale: the latest signature of fraction {fraction_id} is {shown}, "
            f"not {supersedes}; reload the page and sign again; nothing was signed"
        )
    if reason is None:
        raise UnprocessableError(
            f"give a reason for replacing signature {latest.id} of fraction {fraction_id}"
        )
    return latest.id
