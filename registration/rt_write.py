# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Writing an RT Structure Set from masks and an RT Plan with one isocentre (pydicom).

For tests, QA and sample data: a planning package for a CT written by
:mod:`registration.dicom_write` (or read by :mod:`registration.dicom_series`). Both objects are
Explicit VR Little Endian, reference the CT's Frame of Reference, study and series, and pass
``dciodvfy``.

Contours
--------
Each slice ``k`` of a mask (``[k, j, i]`` on the CT grid) is outlined by
:func:`registration.rt_sections.mask_contours_lps_mm` (marching squares half-way between inside and
outside voxel centres); every closed outline is one ``CLOSED_PLANAR`` contour on the slice plane,
so :func:`registration.rt_raster.rasterize_structure` gives back the same mask, holes included.
Coordinates are written with 0.001 mm resolution.

The plan
--------
One static photon beam (gantry 0°, 10 × 10 cm jaws, two control points) whose first control
point carries the isocentre; ``RTPlanGeometry`` PATIENT, referencing the structure set. It holds
no dose: it exists to carry the isocentre, machine name and approval like a planning system's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from registration.errors import PlanningPackageError
from registration.frames import FloatArray
from registration.geometry import LpsPoint
from registration.rt_dataset import RT_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE
from registration.rt_raster import BoolArray
from registration.rt_sections import mask_contours_lps_mm
from registration.volume import CtVolume

__all__ = ["RoiMask", "mask_contours_lps_mm", "write_rt_plan", "write_rt_structure_set"]

_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (as TPSs write it)
_CONTOUR_DATA = Tag(0x3006, 0x0050)


@dataclass(frozen=True, eq=False)
class RoiMask:
    """A structure to write: a bool mask ``[k, j, i]`` on the CT grid."""

    name: str
    interpreted_type: str
    color_rgb: tuple[int, int, int]
    mask: BoolArray


def write_rt_structure_set(
    path: Path,
    ct: CtVolume,
    rois: Sequence[RoiMask],
    *,
    label: str = "mvct-guide",
    patient_name: str = "",
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    approval_status: str = "UNAPPROVED",
    reviewer_name: str = "",
    when: datetime | None = None,
) -> Dataset:
    """Write ``rois`` as an RT Structure Set for ``ct``; return the dataset written."""
    if len(ct.sop_instance_uids) != ct.image.GetSize()[2]:
        raise PlanningPackageError(
            "the CT volume must carry one SOP Instance UID per slice (read it with "
            "registration.dicom_series.read_ct_series) to be referenced by a structure set"
        )
    when = when or datetime.now()
    ds = _common(ct, "RTSTRUCT", patient_name, RT_STRUCTURE_SET_STORAGE, when)
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate, ds.StructureSetTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_frame_reference(ct)])
    roi_items, contour_items, observations = [], [], []
    for number, roi in enumerate(rois, start=1):
        roi_items.append(
            _item(
                ROINumber=number,
                ReferencedFrameOfReferenceUID=ct.frame_of_reference_uid,
                ROIName=roi.name,
                ROIGenerationAlgorithm="AUTOMATIC",
            )
        )
        contours = []
        for n, (k, points) in enumerate(mask_contours_lps_mm(roi.mask, ct.image), start=1):
            contours.append(
                _item(
                    ContourImageSequence=DicomSequence([_image_reference(ct, k)]),
                    ContourGeometricType="CLOSED_PLANAR",
                    NumberOfContourPoints=points.shape[0],
                    ContourNumber=n,
                )
            )
            contours[-1][_CONTOUR_DATA] = _ds_raw(_CONTOUR_DATA, points)
        contour_item = _item(ReferencedROINumber=number, ROIDisplayColor=list(roi.color_rgb))
        if contours:
            contour_item.ContourSequence = DicomSequence(contours)
        contour_items.append(contour_item)
        observations.append(
            _item(
                ObservationNumber=number,
                ReferencedROINumber=number,
                ROIObservationLabel=roi.name[:16],
                RTROIInterpretedType=roi.interpreted_type,
                ROIInterpreter="",
            )
        )
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    _approval(ds, approval_status, reviewer_name, when)
    _save(ds, path)
    return ds


def write_rt_plan(
    path: Path,
    ct: CtVolume,
    structure_set: Dataset,
    isocenter: LpsPoint,
    *,
    machine_name: str = "SAMPLE_TOMO",
    label: str = "mvct-guide",
    patient_name: str = "",
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    approval_status: str = "UNAPPROVED",
    reviewer_name: str = "",
    when: datetime | None = None,
) -> Dataset:
    """Write a one-beam RT Plan whose isocentre is ``isocenter`` (LPS mm); return it."""
    when = when or datetime.now()
    ds = _common(ct, "RTPLAN", patient_name, RT_PLAN_STORAGE, when)
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.RTPlanLabel = label[:16]
    ds.RTPlanDate, ds.RTPlanTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.RTPlanGeometry = "PATIENT"
    ds.ReferencedStructureSetSequence = DicomSequence(
        [
            _item(
                ReferencedSOPClassUID=RT_STRUCTURE_SET_STORAGE,
                ReferencedSOPInstanceUID=structure_set.SOPInstanceUID,
            )
        ]
    )
    ds.PatientSetupSequence = DicomSequence(
        [_item(PatientSetupNumber=1, PatientPosition=ct.patient_position.value)]
    )
    ds.FractionGroupSequence = DicomSequence(
        [
            _item(
                FractionGroupNumber=1,
                NumberOfFractionsPlanned=1,
                NumberOfBeams=1,
                NumberOfBrachyApplicationSetups=0,
                ReferencedBeamSequence=DicomSequence([_item(ReferencedBeamNumber=1)]),
            )
        ]
    )
    ds.BeamSequence = DicomSequence([_beam(machine_name, isocenter)])
    _approval(ds, approval_status, reviewer_name, when)
    _save(ds, path)
    return ds


def _ds_raw(tag: BaseTag, values: FloatArray) -> RawDataElement:
    """A DS element encoded at once (pydicom would build and validate one object per number)."""
    text = "\\".join(np.char.mod("%.3f", values.ravel()).tolist()).encode("ascii")
    if len(text) % 2:
        text += b" "
    return RawDataElement(tag, "DS", len(text), text, 0, False, True)


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _common(
    ct: CtVolume, modality: str, patient_name: str, sop_class: str, when: datetime
) -> Dataset:
    """Patient, study, series, equipment and SOP Common elements (the UIDs are set by callers)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate, ds.InstanceCreationTime = (
        when.strftime("%Y%m%d"),
        when.strftime("%H%M%S"),
    )
    ds.SOPClassUID = sop_class
    ds.StudyDate, ds.StudyTime = "", ""
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "mvct-guide"
    ds.ReferringPhysicianName = ""
    ds.OperatorsName = ""
    ds.PatientName = patient_name
    ds.PatientID = ct.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = ct.study_instance_uid
    ds.StudyID = ""
    ds.SeriesNumber = 10 if modality == "RTSTRUCT" else 11
    ds.InstanceNumber = 1
    return ds


def _frame_reference(ct: CtVolume) -> Dataset:
    series = _item(
        SeriesInstanceUID=ct.series_instance_uid,
        ContourImageSequence=DicomSequence(
            [_image_reference(ct, k) for k in range(len(ct.sop_instance_uids))]
        ),
    )
    study = _item(
        ReferencedSOPClassUID=_STUDY_COMPONENT,
        ReferencedSOPInstanceUID=ct.study_instance_uid,
        RTReferencedSeriesSequence=DicomSequence([series]),
    )
    return _item(
        FrameOfReferenceUID=ct.frame_of_reference_uid,
        RTReferencedStudySequence=DicomSequence([study]),
    )


def _image_reference(ct: CtVolume, k: int) -> Dataset:
    return _item(
        ReferencedSOPClassUID=_CT_IMAGE_STORAGE, ReferencedSOPInstanceUID=ct.sop_instance_uids[k]
    )


def _beam(machine_name: str, isocenter: LpsPoint) -> Dataset:
    jaws = DicomSequence(
        [
            _item(RTBeamLimitingDeviceType="ASYMX", NumberOfLeafJawPairs=1),
            _item(RTBeamLimitingDeviceType="ASYMY", NumberOfLeafJawPairs=1),
        ]
    )
    first = _item(
        ControlPointIndex=0,
        NominalBeamEnergy=6,
        BeamLimitingDevicePositionSequence=DicomSequence(
            [
                _item(RTBeamLimitingDeviceType="ASYMX", LeafJawPositions=[-50, 50]),
                _item(RTBeamLimitingDeviceType="ASYMY", LeafJawPositions=[-50, 50]),
            ]
        ),
        GantryAngle=0,
        GantryRotationDirection="NONE",
        BeamLimitingDeviceAngle=0,
        BeamLimitingDeviceRotationDirection="NONE",
        PatientSupportAngle=0,
        PatientSupportRotationDirection="NONE",
        TableTopEccentricAngle=0,
        TableTopEccentricRotationDirection="NONE",
        TableTopVerticalPosition="",
        TableTopLongitudinalPosition="",
        TableTopLateralPosition="",
        IsocenterPosition=[f"{v:.3f}" for v in isocenter.as_array()],
        CumulativeMetersetWeight=0,
    )
    last = _item(ControlPointIndex=1, CumulativeMetersetWeight=1)
    return _item(
        BeamNumber=1,
        BeamName="ISO",
        BeamType="STATIC",
        RadiationType="PHOTON",
        TreatmentMachineName=machine_name,
        PrimaryDosimeterUnit="MU",
        SourceAxisDistance=1000,
        BeamLimitingDeviceSequence=jaws,
        ReferencedPatientSetupNumber=1,
        TreatmentDeliveryType="TREATMENT",
        NumberOfWedges=0,
        NumberOfCompensators=0,
        NumberOfBoli=0,
        NumberOfBlocks=0,
        FinalCumulativeMetersetWeight=1,
        NumberOfControlPoints=2,
        ControlPointSequence=DicomSequence([first, last]),
    )


def _approval(ds: Dataset, status: str, reviewer_name: str, when: datetime) -> None:
    status = status.upper()
    if status not in ("APPROVED", "UNAPPROVED", "REJECTED"):
        raise PlanningPackageError(
            f"approval status {status!r} is not APPROVED, UNAPPROVED or REJECTED"
        )
    ds.ApprovalStatus = status
    if status != "UNAPPROVED":
        if not reviewer_name:
            raise PlanningPackageError(f"an {status} object needs the reviewer's name")
        ds.ReviewDate, ds.ReviewTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
        ds.ReviewerName = reviewer_name


def _save(ds: Dataset, path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MVCT_GUIDE_0_1"
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True, overwrite=False)
