# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Writing a 3-D image as a DICOM CT Image Storage series, one file per slice.

Used to make synthetic series (tests, QA, simulated MVCT) that :mod:`registration.dicom_series`
reads back, and to build deliberately bad series in tests through ``extra``.

Encoding
--------
* Explicit VR Little Endian, SOP Class CT Image Storage (1.2.840.10008.5.1.4.1.1.2);
* pixels are signed 16-bit integers (BitsAllocated = BitsStored = 16, PixelRepresentation 1)
  with RescaleSlope 1 and RescaleIntercept 0, so a stored value *is* the HU value: the image is
  rounded to the nearest integer and clipped to [-32768, 32767];
* geometry from the image (LPS, mm): with ``D`` the direction matrix (columns = axes of index
  i, j, k), ImageOrientationPatient = ``D[:, 0]`` then ``D[:, 1]``, PixelSpacing =
  ``[spacing_j, spacing_i]`` (row spacing first), ImagePositionPatient of slice ``k`` = the
  physical point of index ``(0, 0, k)``, SliceThickness = SpacingBetweenSlices = ``spacing_k``.
  Any orthonormal direction is written as it is. The reader orders slices along
  ``D[:, 0] × D[:, 1]``; for a left-handed direction (``D[:, 2]`` opposite to that normal) it
  therefore returns the same voxels at the same places with the slice axis reversed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from registration.errors import InputError
from registration.frames import PatientPosition

__all__ = ["write_ct_series"]

_INT16_MIN, _INT16_MAX = -32768, 32767


def write_ct_series(
    image: sitk.Image,
    folder: Path,
    *,
    patient_position: PatientPosition,
    patient_id: str,
    patient_name: str = "",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_description: str = "",
    series_number: int = 1,
    modality: str = "CT",
    extra: Mapping[str, object] | None = None,
) -> list[Path]:
    """Write ``image`` (3-D, scalar, HU, LPS) as a CT series in ``folder``; return the files.

    The files are returned in slice order (index k = 0, 1, …) and named
    ``CT.<SeriesInstanceUID>.<k+1>.dcm``; an existing file is never overwritten
    (``FileExistsError``). UIDs not given are generated. ``extra`` sets or overrides elements
    by DICOM keyword in every file (``None`` deletes the element), e.g.
    ``{"GantryDetectorTilt": 15}``; the file meta follows SOPClassUID and SOPInstanceUID.
    """
    hu = _hu_int16(image)
    direction = _direction_matrix(image)
    position = PatientPosition.parse(patient_position)
    extra = dict(extra or {})
    for keyword in extra:
        if tag_for_keyword(keyword) is None:
            raise InputError(f"extra element {keyword!r} is not a DICOM keyword; check its name.")
    study_uid = study_instance_uid or generate_uid()
    series_uid = series_instance_uid or generate_uid()
    shared = _shared_dataset(
        image,
        direction,
        patient_name=patient_name,
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=frame_of_reference_uid or generate_uid(),
        position=position,
        series_description=series_description,
        series_number=series_number,
        modality=modality,
    )
    folder.mkdir(parents=True, exist_ok=True)
    normal = np.cross(direction[:, 0], direction[:, 1])
    paths = []
    for k in range(hu.shape[0]):
        dataset = _slice_dataset(shared, image, k, normal, hu[k])
        for keyword, value in extra.items():
            if value is None:
                if keyword in dataset:
                    del dataset[keyword]
            else:
                setattr(dataset, keyword, value)
        dataset.file_meta = _file_meta(dataset)
        path = folder / f"CT.{series_uid}.{k + 1:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True, overwrite=False)
        paths.append(path)
    return paths


def _hu_int16(image: sitk.Image) -> npt.NDArray[np.int16]:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"Only a 3-D scalar image can be written as a CT series; this one is "
            f"{image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} components."
        )
    values = sitk.GetArrayFromImage(image).astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError("The image holds NaN or infinite values; replace them before writing.")
    return np.clip(np.rint(values), _INT16_MIN, _INT16_MAX).astype(np.int16)


def _direction_matrix(image: sitk.Image) -> npt.NDArray[np.float64]:
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InputError(
            f"The image direction {direction.ravel().tolist()} is not orthonormal; DICOM "
            "slices need orthogonal unit axes."
        )
    return direction


def _ds(values: npt.ArrayLike) -> list[str]:
    return [format_number_as_ds(float(v)) for v in np.ravel(values)]


def _shared_dataset(
    image: sitk.Image,
    direction: npt.NDArray[np.float64],
    *,
    patient_name: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    frame_uid: str,
    position: PatientPosition,
    series_description: str,
    series_number: int,
    modality: str,
) -> Dataset:
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    spacing_i, spacing_j, spacing_k = image.GetSpacing()
    columns, rows, _ = image.GetSize()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "mvct-guide"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.SliceThickness = format_number_as_ds(spacing_k)
    ds.SpacingBetweenSlices = format_number_as_ds(spacing_k)
    ds.KVP = ""
    ds.PatientPosition = position.value
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = ""
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = _ds(direction[:, :2].T)
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = _ds([spacing_j, spacing_i])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


def _slice_dataset(
    shared: Dataset,
    image: sitk.Image,
    k: int,
    normal: npt.NDArray[np.float64],
    pixels: npt.NDArray[np.int16],
) -> Dataset:
    ds = copy.deepcopy(shared)
    position_mm = np.array(image.TransformIndexToPhysicalPoint((0, 0, k)), dtype=np.float64)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = _ds(position_mm)
    ds.SliceLocation = format_number_as_ds(float(position_mm @ normal))
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _file_meta(dataset: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MVCT_GUIDE_0_1"
    return meta
