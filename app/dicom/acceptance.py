"""What the DICOM receivers accept: one received instance checked, with the status to answer.

Used by both receivers (C-STORE, :mod:`app.dicom.scp`; STOW-RS, :mod:`app.dicom.stow`) through
:func:`app.dicom.inbox.receive_file`, which keeps what is accepted.

What is refused, with which status (C-STORE status, or STOW-RS Failure Reason, PS3.18 I.2.2):

=========================================================  =============================
the bytes are not a readable DICOM data set, or lack        0xC000 cannot understand
SOP/Series/Study Instance UID or (CT) Pixel Data
not CT Image, RT Structure Set or RT Plan Storage           0x0122 SOP class not supported
(STOW-RS; C-STORE does not negotiate others), or a
C-STORE data set whose SOP Class
is not the negotiated one                                   0xA900 does not match SOP class
Modality is not the SOP Class's (CT, RTSTRUCT, RTPLAN)      0xA900
Study Instance UID differs from the STOW-RS target study    0xA900
a compressed transfer syntax no installed decoder reads     0xC122 transfer syntax
the disk or the database failed                             0xA700 out of resources
over a receiver limit (size, inbox backlog, free disk;      0xA700
checked before writing, :mod:`app.dicom.quota`)
=========================================================  =============================

An instance whose SOP Instance UID was received before is answered "stored" again, so a sender's
retry never fails and nothing already stored is replaced: the first copy is kept; when the second
copy has other bytes (another transfer syntax, or changed content) the answer is the warning
0xB101 (implementation-specific: "received before with other content; the first copy is kept").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, CTImageStorage, RTPlanStorage, RTStructureSetStorage

#: the SOP classes received, and the Modality each must carry (the RT objects are a course's
#: planning package, attached by Frame of Reference: :mod:`app.dicom.rt_ingest`)
MODALITY_OF = {
    str(CTImageStorage): "CT",
    str(RTStructureSetStorage): "RTSTRUCT",
    str(RTPlanStorage): "RTPLAN",
}

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
#: implementation-specific warning: this SOP Instance UID came before with other bytes; the first
#: copy is kept (C-STORE status, STOW-RS Warning Reason)
DUPLICATE_KEPT_FIRST = 0xB101


@dataclass(frozen=True)
class StoreOutcome:
    """What became of one received instance; ``status`` is the DIMSE status to answer."""

    status: int
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    message: str = ""  #: why it was refused (or the duplicate note); "" for a plain success

    @property
    def stored(self) -> bool:
        """Success or a warning (0xBxxx): the instance is (or already was) kept."""
        return self.status == SUCCESS or 0xB000 <= self.status <= 0xBFFF


@dataclass(frozen=True)
class Received:
    """Who sent an instance and how."""

    source: str  #: "c-store" or "stow-rs"
    sender: str  #: calling AE title, or the API key's name
    expected_sop_class_uid: str | None = None  #: C-STORE: the Affected SOP Class UID
    expected_sop_instance_uid: str | None = None  #: C-STORE: the Affected SOP Instance UID
    expected_study_uid: str | None = None  #: STOW-RS to /studies/{study}


@dataclass(frozen=True)
class Checked(StoreOutcome):
    dataset: Dataset | None = None


def check(path: Path, received: Received) -> Checked:
    try:
        dataset = dcmread(path, force=False)
    except Exception as exc:  # pydicom raises many types for a damaged file
        return Checked(
            CANNOT_UNDERSTAND,
            message=f"not a readable DICOM instance ({type(exc).__name__}: {exc}); "
            "send the file again or re-export it",
        )
    sop_class = str(dataset.get("SOPClassUID", ""))
    sop_instance = str(dataset.get("SOPInstanceUID", ""))
    study = str(dataset.get("StudyInstanceUID", ""))
    series = str(dataset.get("SeriesInstanceUID", ""))

    def refuse(status: int, message: str) -> Checked:
        return Checked(status, sop_class, sop_instance, study, series, message)

    missing = [
        name
        for name, value in (
            ("SOPClassUID", sop_class),
            ("SOPInstanceUID", sop_instance),
            ("StudyInstanceUID", study),
            ("SeriesInstanceUID", series),
        )
        if not value or len(value) > 64
    ]
    if missing:
        return refuse(CANNOT_UNDERSTAND, f"missing or invalid {', '.join(missing)}")
    expected_class = received.expected_sop_class_uid
    if expected_class is not None and sop_class != expected_class:
        return refuse(
            DATA_SET_MISMATCH,
            f"the data set's SOP Class UID {sop_class} is not the one sent with it "
            f"({expected_class})",
        )
    if sop_class not in MODALITY_OF:
        status = DATA_SET_MISMATCH if expected_class is not None else SOP_CLASS_NOT_SUPPORTED
        return refuse(
            status,
            f"{UID(sop_class).name or sop_class} is not accepted: only CT Image Storage "
            "(single-frame CT slices), RT Structure Set Storage and RT Plan Storage are",
        )
    expected_instance = received.expected_sop_instance_uid
    if expected_instance is not None and sop_instance != expected_instance:
        return refuse(
            DATA_SET_MISMATCH,
            f"the data set's SOP Instance UID {sop_instance} is not the one sent with it",
        )
    modality = str(dataset.get("Modality", ""))
    if modality != MODALITY_OF[sop_class]:
        return refuse(
            DATA_SET_MISMATCH, f"Modality is {modality!r}, not {MODALITY_OF[sop_class]!r}"
        )
    if received.expected_study_uid is not None and study != received.expected_study_uid:
        return refuse(
            DATA_SET_MISMATCH,
            f"the instance belongs to study {study}, not to the study {received.expected_study_uid}"
            " of the request",
        )
    syntax = transfer_syntax(dataset)
    if syntax is None:
        return refuse(CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID")
    if not decodable(syntax):
        return refuse(
            TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"no installed decoder reads {syntax.name or syntax}; send it uncompressed",
        )
    pixel_problem = _pixel_problem(dataset, syntax) if sop_class == CTImageStorage else ""
    if pixel_problem:
        return refuse(CANNOT_UNDERSTAND, pixel_problem)
    return Checked(SUCCESS, sop_class, sop_instance, study, series, dataset=dataset)


def transfer_syntax(dataset: Dataset) -> UID | None:
    meta = getattr(dataset, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(value)) if value else None


def decodable(syntax: UID) -> bool:
    """Whether pydicom can read the pixels of ``syntax`` here (uncompressed, or a decoder)."""
    if not syntax.is_compressed:
        return syntax.is_transfer_syntax
    from pydicom.pixels.decoders.base import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def _pixel_problem(dataset: Dataset, syntax: UID) -> str:
    if "PixelData" not in dataset:
        return "the instance has no Pixel Data"
    if syntax.is_compressed:
        return ""
    try:
        expected = (
            int(dataset.Rows)
            * int(dataset.Columns)
            * int(dataset.get("SamplesPerPixel", 1))
            * int(dataset.BitsAllocated)
            // 8
            * int(dataset.get("NumberOfFrames", 1) or 1)
        )
    except (AttributeError, TypeError, ValueError):
        return "Rows, Columns or Bits Allocated are missing or not numbers"
    actual = len(dataset.PixelData)
    if actual < expected:
        return f"the Pixel Data is truncated ({actual} bytes, {expected} expected)"
    return ""
