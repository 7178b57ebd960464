"""What each role may do: the one table the JSON API, the review pages and the use cases read.

============  ====================================================================
role          may
============  ====================================================================
console       read; post planning CTs and MVCTs; create courses
therapist     read; use the review pages (worklist, review, no signing); enter a QA offset
physician     read; create and change courses; use the review pages; sign off; acknowledge
              an anatomy-change alert
physicist     read; create and change courses; use the review pages; reports; daily QA
              (QA courses, offsets, acknowledging a failed QA scan, the monthly export);
              decide what a held (unassigned) DICOM series is
admin         reports (users and API keys are managed from the command line)
============  ====================================================================

A new role is a member of :class:`app.db.models.Role` and a row of :data:`ALLOWED`; a new kind
of action is a member of :class:`Action`, given to the roles that may take it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum, unique

from app.db.models import Role


@unique
class Action(StrEnum):
    READ = "read"  #: fractions, courses, shift logs, REG files (API)
    POST_IMAGES = "post_images"  #: send planning CTs and MVCTs (API, DICOM is by AE title)
    CREATE_COURSE = "create_course"
    CHANGE_COURSE = "change_course"  #: margin, DOF, mode, site, isocentre
    USE_PAGES = "use_pages"  #: sign in to the review pages
    SIGN_OFF = "sign_off"  #: approve, adjust or reject a fraction's correction
    READ_REPORTS = "read_reports"  #: weekly set-up error reports
    ACKNOWLEDGE_ANATOMY = "acknowledge_anatomy"  #: read an anatomy-change alert, with a note
    ENTER_QA_OFFSET = "enter_qa_offset"  #: the couch offset applied to the QA phantom
    MANAGE_QA = "manage_qa"  #: QA courses, acknowledging a failed QA scan, the monthly export
    #: list the received DICOM series no rule identified; assign each, or discard it
    ASSIGN_DICOM_SERIES = "assign_dicom_series"


ALLOWED: Mapping[Role, frozenset[Action]] = {
    Role.CONSOLE: frozenset({Action.READ, Action.POST_IMAGES, Action.CREATE_COURSE}),
    Role.THERAPIST: frozenset({Action.READ, Action.USE_PAGES, Action.ENTER_QA_OFFSET}),
    Role.PHYSICIAN: frozenset(
        {
            Action.READ,
            Action.CREATE_COURSE,
            Action.CHANGE_COURSE,
            Action.USE_PAGES,
            Action.SIGN_OFF,
            Action.ACKNOWLEDGE_ANATOMY,
        }
    ),
    Role.PHYSICIST: frozenset(
        {
            Action.READ,
            Action.CREATE_COURSE,
            Action.CHANGE_COURSE,
            Action.USE_PAGES,
            Action.READ_REPORTS,
            Action.ENTER_QA_OFFSET,
            Action.MANAGE_QA,
            Action.ASSIGN_DICOM_SERIES,
        }
    ),
    Role.ADMIN: frozenset({Action.READ_REPORTS}),
}


def may(role: Role | str | None, action: Action) -> bool:
    """Whether ``role`` may take ``action`` (no role or an unknown one may do nothing)."""
    if role is None:
        return False
    try:
        return action in ALLOWED[Role(role)]
    except ValueError:
        return False


def roles_for(action: Action) -> tuple[Role, ...]:
    """The roles that may take ``action``, in the order of :class:`Role`."""
    return tuple(role for role in Role if action in ALLOWED.get(role, frozenset()))
