# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Reading a CT series into a :class:`~registration.volume.CtVolume`, strictly.

Public API
----------
:func:`list_ct_series`
    what CT series a folder, archive or list of files holds (:class:`SeriesSummary` each);
:func:`read_ct_series`
    one CT Image Storage series → a ``sitkFloat32`` image in Hounsfield units, in LPS;
:func:`read_volume`
    the same for DICOM, and research formats (.mha, .mhd, .nrrd, .nii, .nii.gz) via SimpleITK,
    which record no patient position and so need the caller to give it.

Sources are described in :mod:`registration.dicom_files`; the geometry checks and the way the
SimpleITK origin, spacing and direction follow from ImagePositionPatient, PixelSpacing and
ImageOrientationPatient are written out in :mod:`registration.dicom_stack`.

Strictness
----------
Anything that could silently put a voxel in the wrong place is refused with an
:class:`~registration.errors.InputError` subclass whose message names the file (relative to
the folder or archive given) and says what to do: files that are not DICOM (only a
``DICOMDIR`` index is skipped), no CT series or several without one being named
(:class:`~registration.errors.SeriesSelectionError`), multi-frame (Enhanced) CT, a Patient
Position other than HFS/HFP/FFS/FFP (:class:`~registration.errors.UnsupportedPositionError`),
and every geometry problem listed in :mod:`registration.dicom_stack`. Pixels are decoded by
pydicom (with whatever decoder plugins are installed), not by SimpleITK's GDCM reader, so that
the image is placed exactly on the grid that was checked. What was tolerated is listed in
``CtVolume.warnings``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from registration.dicom_files import DicomFile, DicomSource, describe_source, open_dicom_files
from registration.dicom_stack import (
    SliceHeader,
    check_stack,
    dataset_text,
    read_hu_array,
    stack_image,
)
from registration.errors import (
    DicomSeriesError,
    InputError,
    SeriesSelectionError,
    UnsupportedPositionError,
)
from registration.frames import PatientPosition
from registration.volume import CtVolume

__all__ = [
    "RESEARCH_FORMAT_SUFFIXES",
    "RESEARCH_FORMAT_WARNING",
    "SeriesSummary",
    "list_ct_series",
    "read_ct_series",
    "read_volume",
]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_MULTIFRAME_CT = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
}
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

#: File name endings read with SimpleITK by :func:`read_volume` (lower case).
RESEARCH_FORMAT_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nii", ".nii.gz")
RESEARCH_FORMAT_WARNING = "research format: patient position given by the caller"


@dataclass(frozen=True)
class SeriesSummary:
    """One CT series found in a source, as offered to a person choosing between several."""

    series_instance_uid: str
    modality: str
    series_description: str
    number_of_files: int
    patient_id: str
    study_instance_uid: str


def list_ct_series(source: DicomSource) -> list[SeriesSummary]:
    """The CT series in ``source`` (a folder, a .zip archive, or a list of files).

    Only series whose Modality is CT are listed, in the order their first file was found; the
    list is empty when there is none. Non-DICOM files are refused as :func:`read_ct_series`
    refuses them.
    """
    with open_dicom_files(source) as files:
        groups = _group_by_series(_read_headers(files))
    return [_summary(uid, headers) for uid, headers in groups.items() if _is_ct(headers)]


def read_ct_series(
    source: DicomSource,
    series_uid: str | None = None,
    *,
    patient_position: PatientPosition | str | None = None,
) -> CtVolume:
    """Read one CT Image Storage series, checked, as a ``sitkFloat32`` HU image in LPS.

    ``source`` is a folder (searched recursively), a .zip archive, or a list of files. When it
    holds several CT series, ``series_uid`` names the one to read (other series, CT or not, are
    ignored with a warning). ``patient_position`` is used only when the series has no Patient
    Position (0018,5100); one that contradicts the header is refused.
    """
    wanted = None if patient_position is None else PatientPosition.parse(patient_position)
    with open_dicom_files(source) as files:
        groups = _group_by_series(_read_headers(files))
        uid, warnings = _select_series(groups, series_uid, describe_source(source))
        headers = groups[uid]
        for header in headers:
            _check_single_frame_ct(header)
        stack = check_stack(headers)
        position, position_warnings = _resolve_position(stack.patient_position, wanted, headers)
        hu = read_hu_array(stack)
    first = stack.slices[0].header
    return CtVolume(
        image=stack_image(stack, hu),
        patient_position=position,
        series_instance_uid=uid,
        frame_of_reference_uid=stack.frame_of_reference_uid,
        study_instance_uid=dataset_text(first, "StudyInstanceUID"),
        patient_id=dataset_text(first, "PatientID"),
        modality=dataset_text(first, "Modality"),
        series_description=dataset_text(first, "SeriesDescription"),
        sop_instance_uids=tuple(s.sop_instance_uid for s in stack.slices),
        source_files=tuple(s.header.file.location for s in stack.slices),
        warnings=(*warnings, *stack.warnings, *position_warnings),
    )


def read_volume(
    path: DicomSource,
    patient_position: PatientPosition | str | None = None,
    series_uid: str | None = None,
) -> CtVolume:
    """Read a CT volume from DICOM (folder, .zip, files) or from a research format.

    Research formats (:data:`RESEARCH_FORMAT_SUFFIXES`) are read with SimpleITK, which converts
    their axes to LPS; they do not record how the patient lay, so ``patient_position`` is
    required for them, and the volume carries :data:`RESEARCH_FORMAT_WARNING`. Everything else
    goes to :func:`read_ct_series`.
    """
    if isinstance(path, str | os.PathLike) and _is_research_format(Path(path)):
        return _read_research_format(Path(path), patient_position, series_uid)
    return read_ct_series(path, series_uid, patient_position=patient_position)


def _read_headers(files: Iterable[DicomFile]) -> list[SliceHeader]:
    headers = []
    for file in files:
        try:
            dataset = dcmread(file.open(), stop_before_pixels=True, force=False)
        except InvalidDicomError:
            raise DicomSeriesError(
                f"{file.name} is not a DICOM file (no 'DICM' marker after the 128-byte "
                "preamble). Remove it, or give only the files of the series."
            ) from None
        except DicomSeriesError:
            raise
        except Exception as exc:  # pydicom raises many types for a damaged file
            raise DicomSeriesError(
                f"{file.name} cannot be read as DICOM ({type(exc).__name__}: {exc}). Remove it "
                "or re-export the series."
            ) from None
        header = SliceHeader(file, dataset)
        meta = getattr(dataset, "file_meta", None)
        media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
        if _MEDIA_STORAGE_DIRECTORY not in (media_class, dataset_text(header, "SOPClassUID")):
            headers.append(header)
    return headers


def _group_by_series(headers: Iterable[SliceHeader]) -> dict[str, list[SliceHeader]]:
    groups: dict[str, list[SliceHeader]] = {}
    for header in headers:
        uid = dataset_text(header, "SeriesInstanceUID")
        if not uid:
            raise DicomSeriesError(
                f"{header.file.name} has no SeriesInstanceUID, so it cannot be assigned to a "
                "series. Remove it or re-export the series."
            )
        groups.setdefault(uid, []).append(header)
    return groups


def _is_ct(headers: Sequence[SliceHeader]) -> bool:
    return dataset_text(headers[0], "Modality").upper() == "CT"


def _summary(uid: str, headers: Sequence[SliceHeader]) -> SeriesSummary:
    first = headers[0]
    return SeriesSummary(
        series_instance_uid=uid,
        modality=dataset_text(first, "Modality"),
        series_description=dataset_text(first, "SeriesDescription"),
        number_of_files=len(headers),
        patient_id=dataset_text(first, "PatientID"),
        study_instance_uid=dataset_text(first, "StudyInstanceUID"),
    )


def _describe(uid: str, headers: Sequence[SliceHeader]) -> str:
    first = headers[0]
    modality = dataset_text(first, "Modality") or "no modality"
    description = dataset_text(first, "SeriesDescription") or "no description"
    count = len(headers)
    return f"{modality} series {uid} ('{description}', {count} files, e.g. {first.file.name})"


def _select_series(
    groups: dict[str, list[SliceHeader]], series_uid: str | None, shown_source: str
) -> tuple[str, tuple[str, ...]]:
    """The UID of the series to read, and a warning naming the series that were ignored."""
    ct_uids = [uid for uid, headers in groups.items() if _is_ct(headers)]
    listing = "; ".join(_describe(uid, groups[uid]) for uid in ct_uids)
    if series_uid is not None:
        if series_uid not in groups:
            raise SeriesSelectionError(
                f"Series {series_uid} is not in {shown_source}; the CT series there are: "
                f"{listing or 'none'}. Name one of them.",
                tuple(ct_uids),
            )
        if series_uid not in ct_uids:
            found = _describe(series_uid, groups[series_uid])
            raise DicomSeriesError(
                f"Series {series_uid} is not CT: it is the {found}. Name a CT series."
            )
        chosen = series_uid
    elif not ct_uids:
        found = "; ".join(_describe(uid, headers) for uid, headers in groups.items())
        raise DicomSeriesError(
            f"No CT series in {shown_source}; found {found or 'no DICOM images'}. "
            "Give the CT series (Modality CT)."
        )
    elif len(ct_uids) > 1:
        raise SeriesSelectionError(
            f"{shown_source} holds {len(ct_uids)} CT series; name the one to read: {listing}.",
            tuple(ct_uids),
        )
    else:
        chosen = ct_uids[0]
    ignored = [_describe(uid, headers) for uid, headers in groups.items() if uid != chosen]
    warnings = (f"Ignored {len(ignored)} other series: {'; '.join(ignored)}.",) if ignored else ()
    return chosen, warnings


def _check_single_frame_ct(header: SliceHeader) -> None:
    name = header.file.name
    sop_class = dataset_text(header, "SOPClassUID")
    frames = dataset_text(header, "NumberOfFrames")
    if sop_class in _MULTIFRAME_CT or (frames not in ("", "1")):
        raise DicomSeriesError(
            f"{name} is a multi-frame image ({UID(sop_class).name or sop_class}, "
            f"{frames or 'unknown'} frames); multi-frame (Enhanced) CT is not supported. "
            "Export the series as CT Image Storage, one file per slice."
        )
    if sop_class != CT_IMAGE_STORAGE:
        raise DicomSeriesError(
            f"{name} is {UID(sop_class).name or repr(sop_class)}, not CT Image Storage "
            f"({CT_IMAGE_STORAGE}). Give a CT image series."
        )
    modality = dataset_text(header, "Modality")
    if modality.upper() != "CT":
        raise DicomSeriesError(
            f"{name} has Modality {modality!r} inside a CT series; give a CT series only."
        )
    samples = dataset_text(header, "SamplesPerPixel")
    if samples not in ("", "1"):
        raise DicomSeriesError(
            f"{name} has {samples} samples per pixel; a CT slice has 1. Re-export the series."
        )


def _resolve_position(
    text: str, wanted: PatientPosition | None, headers: Sequence[SliceHeader]
) -> tuple[PatientPosition, tuple[str, ...]]:
    name = headers[0].file.name
    if not text:
        if wanted is None:
            raise UnsupportedPositionError(
                f"{name}: Patient Position (0018,5100) is missing; it decides how the image "
                "maps to the couch. Re-export the series with it set, or give it explicitly."
            )
        return wanted, (
            f"Patient Position (0018,5100) is missing in the series; {wanted.value} given by "
            "the caller was used.",
        )
    try:
        position = PatientPosition.parse(text)
    except UnsupportedPositionError as exc:
        raise UnsupportedPositionError(f"{name}: {exc}") from None
    if wanted is not None and wanted is not position:
        raise DicomSeriesError(
            f"{name}: Patient Position is {position.value} in the series but {wanted.value} was "
            "given; check which is right and give none (the header is used) or the same value."
        )
    return position, ()


def _is_research_format(path: Path) -> bool:
    return path.name.lower().endswith(RESEARCH_FORMAT_SUFFIXES)


def _read_research_format(
    path: Path, patient_position: PatientPosition | str | None, series_uid: str | None
) -> CtVolume:
    if patient_position is None:
        raise InputError(
            f"{path.name} is a research format that does not record the patient position; "
            "give the patient position explicitly (HFS, HFP, FFS or FFP)."
        )
    if series_uid is not None:
        raise InputError(
            f"A series UID was given but {path.name} is not DICOM; give no series UID for it."
        )
    position = PatientPosition.parse(patient_position)
    if not path.is_file():
        raise InputError(f"{path.name} ({path}) does not exist; check the path.")
    try:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise InputError(f"{path.name} cannot be read ({reason}); check the file.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path.name} is a {image.GetDimension()}-D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel; a CT volume is "
            "3-D and scalar."
        )
    return CtVolume(
        image=image,
        patient_position=position,
        source_files=(str(path),),
        warnings=(RESEARCH_FORMAT_WARNING,),
    )
