"""The exceptions raised by the registration core.

Every message names the bad value (and the file, where there is one) and says what to do,
because the service shows these words unchanged to a therapist at the console.

    RegistrationError                 base of everything raised on purpose by this package
    ├── InputError                    images or options unusable (exit 2, HTTP 4xx)
    │   ├── DicomSeriesError          a DICOM series is incomplete, mixed, tilted, compressed, ...
    │   │   └── ArchiveTooLargeError  a .zip member or archive beyond the size or ratio limits
    │   ├── SeriesSelectionError      several CT series were given and none was named
    │   ├── UnsupportedPositionError  a Patient Position other than HFS, HFP, FFS, FFP
    │   └── PlanningPackageError      an RT Structure Set / RT Plan unusable with this CT
    │       ├── ContourPlaneError     contours not on the CT's slice planes or outside it
    │       ├── ReferenceMismatchError  patient, Frame of Reference or series UIDs disagree
    │       └── PlanningSelectionError  several candidates (plans, isocentres) and none named
    └── RegistrationFailedError       elastix ran but produced no usable transform
"""

from __future__ import annotations


class RegistrationError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(RegistrationError, ValueError):
    """The images or options given cannot be used; the message says why and what to do."""


class DicomSeriesError(InputError):
    """A DICOM CT series cannot be turned into a volume safely."""


class ArchiveTooLargeError(DicomSeriesError):
    """A .zip archive would expand beyond a limit (member size, compression ratio or total)."""


class SeriesSelectionError(InputError):
    """Several CT series were found and the caller must name one of them."""

    def __init__(self, message: str, series_uids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.series_uids = series_uids


class UnsupportedPositionError(InputError):
    """The Patient Position is not one of HFS, HFP, FFS, FFP."""


class RegistrationFailedError(RegistrationError, RuntimeError):
    """The optimiser did not produce a usable transform (e.g. no image overlap)."""


class PlanningPackageError(InputError):
    """An RT Structure Set or RT Plan cannot be used with the planning CT as it is."""


class ContourPlaneError(PlanningPackageError):
    """A structure's contours do not lie on the planning CT's slice planes (or lie outside it)."""


class ReferenceMismatchError(PlanningPackageError):
    """Two objects of the planning package disagree on the patient or on a referenced UID.

    ``expected`` and ``found`` hold the two values the message names.
    """

    def __init__(self, message: str, expected: str, found: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found


class PlanningSelectionError(PlanningPackageError):
    """Several structure sets, plans or isocentres qualify and the caller must name one.

    ``choices`` lists them in words (UIDs or ``"x, y, z"`` in mm) for the message and the API.
    """

    def __init__(self, message: str, choices: tuple[str, ...]) -> None:
        super().__init__(message)
        self.choices = choices
