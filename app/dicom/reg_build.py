"""A DICOM Spatial Registration object (REG) for one fraction, written with pydicom.

SOP Class 1.2.840.10008.5.1.4.1.1.66.1 (Spatial Registration Storage), Modality REG, PS3.3 A.39.1.

Direction of the matrices (the part that is easy to get backwards)
-------------------------------------------------------------------
PS3.3 C.20.2 (Spatial Registration Module): each Registration Sequence item "defines a spatial
registration of the images referenced in that Item to the Registered RCS established by this SOP
Instance"; its Matrix Sequence "registers the Source RCS/images to the Registered RCS". PS3.3
C.20.2.1.1: the Frame of Reference Transformation Matrix ``AMB`` "describes how to transform a
point (Bx, By, Bz) with respect to RCS_B into (Ax, Ay, Az) with respect to RCS_A" — so a matrix
maps points of the item's own (source) frame B **into** the Registered RCS A. (The Deformable
Spatial Registration IOD runs the other way, PS3.17 O.1; this is not that one.)

Here the Registered RCS is the planning CT's frame: this object's Frame of Reference UID is the
planning CT's. Hence

* the planning CT item carries the identity (Registration Type: DCM 125021 "Frame of Reference
  Identity");
* the MVCT item carries ``M⁻¹``, the map from MVCT points to planning points, where ``M`` is the
  API's ``planning_to_daily_lps`` (the anatomy at planning point p is at M·p in today's MVCT)
  (DCM 125024 "Image Content-based Alignment" for the engine's result; DCM 125025 "Visual
  Alignment" when the matrix comes from a correction a physician adjusted).

A reader recovers ``M`` with PS3.3 Equation C.20.2-3: ``MVCT_M_planning = inv(A_M_mvct) ·
A_M_planning`` = ``inv(M⁻¹) · I`` = ``M`` (:func:`planning_to_daily_of`).

Both frames may carry the same Frame of Reference UID (a console that exports the MVCT in the
planning frame): the items are then told apart by their Referenced Image Sequence, which is
always written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    SpatialRegistrationStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from registration.geometry import RigidTransformLps

IDENTITY = ("125021", "Frame of Reference Identity")
IMAGE_CONTENT = ("125024", "Image Content-based Alignment")
VISUAL = ("125025", "Visual Alignment")


@dataclass(frozen=True)
class SeriesRef:
    """A registered image series: where it lives and which instances it has."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    images: tuple[tuple[str, str], ...]  #: (SOP Class UID, SOP Instance UID) per image


@dataclass(frozen=True)
class PatientStudy:
    """Patient and study attributes copied from the MVCT (the REG joins the MVCT's study)."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    referring_physician_name: str = ""
    study_id: str = ""
    accession_number: str = ""
    body_part_examined: str = ""


@dataclass(frozen=True)
class RegContent:
    planning: SeriesRef
    mvct: SeriesRef
    planning_to_daily: RigidTransformLps  #: M of the README; the MVCT item carries M⁻¹
    patient_study: PatientStudy
    created_at: datetime  #: Content Date/Time: when the result (or the signature) was made
    label: str  #: Content Label (CS, ≤16 chars, upper case)
    description: str  #: Content Description, e.g. the sign-off state
    adjusted: bool = False  #: the matrix is a physician's adjusted correction
    creator: str = ""  #: Content Creator's Name (PN), e.g. the signing physician
    comment: str = ""  #: Frame of Reference Transformation Comment of the MVCT item (≤64)
    uid_seed: tuple[str, ...] = field(default=())  #: what makes this REG unique (UIDs derive)
    software_version: str = ""


def build_reg(content: RegContent) -> FileDataset:
    """The REG dataset, with its file meta, ready for ``dcmwrite``."""
    sop_instance_uid = generate_uid(entropy_srcs=["mvct-guide REG instance", *content.uid_seed])
    series_uid = generate_uid(
        entropy_srcs=["mvct-guide REG series", content.mvct.series_instance_uid]
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SpatialRegistrationStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SpatialRegistrationStorage
    ds.SOPInstanceUID = sop_instance_uid
    date, time = content.created_at.strftime("%Y%m%d"), content.created_at.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    _patient_and_study(ds, content)
    ds.Modality = "REG"
    if content.patient_study.body_part_examined:
        ds.BodyPartExamined = content.patient_study.body_part_examined
    else:  # Laterality is 2C on the body part; unknown here (dciodvfy: a warning, not an error)
        ds.Laterality = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 901
    ds.SeriesDescription = "mvct-guide registration"
    ds.FrameOfReferenceUID = content.planning.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "mvct-guide"
    ds.ManufacturerModelName = "mvct-guide"
    ds.SoftwareVersions = content.software_version or "unknown"
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceNumber = 1
    ds.ContentLabel = content.label[:16]
    ds.ContentDescription = content.description[:64]
    ds.ContentCreatorName = content.creator
    # the exact inverse of the matrix given (not Rᵀ): M as the API reports it is rounded to 1e-6,
    # and a reader must get that same M back (to 1e-12), not a re-orthonormalised neighbour
    moved_to_planning = np.linalg.inv(content.planning_to_daily.as_array())
    ds.RegistrationSequence = DicomSequence(
        [
            _registration_item(content.planning, np.eye(4), IDENTITY, "planning CT"),
            _registration_item(
                content.mvct,
                moved_to_planning,
                VISUAL if content.adjusted else IMAGE_CONTENT,
                content.comment or "MVCT to planning CT",
            ),
        ]
    )
    _common_instance_reference(ds, [content.planning, content.mvct])
    return ds


def _patient_and_study(ds: Dataset, content: RegContent) -> None:
    ps = content.patient_study
    ds.PatientName = ps.patient_name
    ds.PatientID = ps.patient_id
    ds.PatientBirthDate = ps.patient_birth_date
    ds.PatientSex = ps.patient_sex
    ds.StudyInstanceUID = content.mvct.study_instance_uid
    ds.StudyDate = ps.study_date
    ds.StudyTime = ps.study_time
    ds.ReferringPhysicianName = ps.referring_physician_name
    ds.StudyID = ps.study_id
    ds.AccessionNumber = ps.accession_number


def _registration_item(
    series: SeriesRef, matrix: np.ndarray, code: tuple[str, str], comment: str
) -> Dataset:
    item = Dataset()
    item.FrameOfReferenceUID = series.frame_of_reference_uid
    item.ReferencedImageSequence = DicomSequence(
        [_sop_ref(sop_class, sop_instance) for sop_class, sop_instance in series.images]
    )
    registration = Dataset()
    registration.FrameOfReferenceTransformationComment = comment[:64]  # LO
    registration.RegistrationTypeCodeSequence = DicomSequence([_code(*code)])
    matrix_item = Dataset()
    matrix_item.FrameOfReferenceTransformationMatrix = matrix_as_ds(matrix)
    matrix_item.FrameOfReferenceTransformationMatrixType = "RIGID"
    registration.MatrixSequence = DicomSequence([matrix_item])
    item.MatrixRegistrationSequence = DicomSequence([registration])
    return item


def matrix_as_ds(matrix: np.ndarray) -> list[str]:
    """The 16 values of a 4×4 matrix, row-major, as Decimal Strings of at most 16 characters."""
    return [format_number_as_ds(float(v) + 0.0) for v in np.asarray(matrix, dtype=float).ravel()]


def _sop_ref(sop_class: str, sop_instance: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_instance
    return ref


def _code(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = meaning
    return code


def _common_instance_reference(ds: Dataset, series: Sequence[SeriesRef]) -> None:
    """Referenced Series Sequence for this study; the other studies' series apart (PS3.3 C.12.2)."""
    own: list[Dataset] = []
    others: dict[str, list[Dataset]] = {}
    for ref in series:
        item = Dataset()
        item.SeriesInstanceUID = ref.series_instance_uid
        item.ReferencedInstanceSequence = DicomSequence(
            [_sop_ref(sop_class, sop_instance) for sop_class, sop_instance in ref.images]
        )
        if ref.study_instance_uid == ds.StudyInstanceUID:
            own.append(item)
        else:
            others.setdefault(ref.study_instance_uid, []).append(item)
    if own:
        ds.ReferencedSeriesSequence = DicomSequence(own)
    if others:
        studies = []
        for study_uid, items in others.items():
            study = Dataset()
            study.StudyInstanceUID = study_uid
            study.ReferencedSeriesSequence = DicomSequence(items)
            studies.append(study)
        ds.StudiesContainingOtherReferencedInstancesSequence = DicomSequence(studies)


def item_matrix(item: Dataset) -> np.ndarray:
    """The 4×4 matrix of one Registration Sequence item (single Matrix Sequence item)."""
    values = item.MatrixRegistrationSequence[0].MatrixSequence[0]
    return np.array([float(v) for v in values.FrameOfReferenceTransformationMatrix]).reshape(4, 4)


def planning_to_daily_of(reg: Dataset) -> np.ndarray:
    """Read back ``M`` (planning → MVCT) from a REG written by :func:`build_reg`.

    PS3.3 Equation C.20.2-3 with A the Registered RCS: ``inv(A_M_mvct) · A_M_planning``.
    """
    planning, mvct = reg.RegistrationSequence[0], reg.RegistrationSequence[1]
    result: np.ndarray = np.linalg.inv(item_matrix(mvct)) @ item_matrix(planning)
    return result
