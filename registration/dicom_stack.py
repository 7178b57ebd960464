# SimpleITK ships no annotations; its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""Checking that the slices of one CT series form one regular 3-D grid, and stacking their pixels.

Geometry (DICOM PS3.3 C.7.6.2.1.1, Image Plane module), all in the patient frame (LPS, mm)
------------------------------------------------------------------------------------------
* row cosine ``r`` = ImageOrientationPatient[0:3]: the direction of increasing column index;
* column cosine ``c`` = ImageOrientationPatient[3:6]: the direction of increasing row index;
* slice normal ``n = r × c``;
* PixelSpacing = ``[Δrow, Δcol]``: the distance between rows (along ``c``) first, then the
  distance between columns (along ``r``);
* ImagePositionPatient: the centre of the first transmitted pixel (row 0, column 0).

Slices are sorted by ``ImagePositionPatient · n``, their height along the normal. The voxel of
column ``i``, row ``j``, sorted slice ``k`` then has its centre at
``IPP₀ + i·Δcol·r + j·Δrow·c + k·Δs·n``, with ``Δs`` the uniform step of the heights. The
SimpleITK image therefore gets origin ``IPP₀``, spacing ``(Δcol, Δrow, Δs)`` and direction
``[r c n]`` (the three vectors as columns, flattened row by row as SimpleITK expects); since
``n = r × c`` the direction is always a proper rotation (determinant +1).

What is refused, and the tolerances
-----------------------------------
* orientations differing by more than :data:`ORIENTATION_TOLERANCE` (per cosine), or cosines
  that are not orthonormal to that tolerance; differing Rows, Columns, PixelSpacing
  (:data:`POSITION_TOLERANCE_MM`), Patient Position or Frame of Reference;
* a non-zero Gantry/Detector Tilt, or slice positions that drift within the slice plane by more
  than :data:`POSITION_TOLERANCE_MM` from the first slice (a sheared stack): resampling is not
  implemented;
* two files with one SOP Instance UID, or two slices at one height (within the tolerance);
* a step larger than :data:`GAP_FACTOR` × the median step (missing slices), or steps that differ
  from the median by more than :data:`POSITION_TOLERANCE_MM` and by more than
  :data:`SPACING_RELATIVE_TOLERANCE` of it (non-uniform spacing);
* fewer than two slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.dataset import Dataset

from registration.dicom_files import DicomFile
from registration.errors import DicomSeriesError
from registration.frames import FloatArray

__all__ = [
    "GAP_FACTOR",
    "ORIENTATION_TOLERANCE",
    "POSITION_TOLERANCE_MM",
    "SPACING_RELATIVE_TOLERANCE",
    "CtStack",
    "SliceHeader",
    "check_stack",
    "dataset_text",
    "read_hu_array",
    "stack_image",
]

ORIENTATION_TOLERANCE = 1e-4
POSITION_TOLERANCE_MM = 0.01
SPACING_RELATIVE_TOLERANCE = 0.01
GAP_FACTOR = 1.5
_TILT_TOLERANCE_DEG = 1e-6

_RESAMPLE_ADVICE = "correct it at the scanner/export or resample the series to an orthogonal grid"


@dataclass(frozen=True)
class SliceHeader:
    """One file's header (read without its pixel data), and the file it came from."""

    file: DicomFile
    dataset: Dataset


@dataclass(frozen=True, eq=False)
class _Slice:
    header: SliceHeader
    sop_instance_uid: str
    position_mm: FloatArray
    orientation: FloatArray
    pixel_spacing_mm: FloatArray
    rows: int
    columns: int
    patient_position: str
    frame_of_reference_uid: str
    rescale_slope: float
    rescale_intercept: float

    @property
    def name(self) -> str:
        return self.header.file.name


@dataclass(frozen=True, eq=False)
class CtStack:
    """The validated slices, sorted along the normal, and the grid they form (LPS, mm)."""

    slices: tuple[_Slice, ...]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    patient_position: str
    frame_of_reference_uid: str
    warnings: tuple[str, ...]


def dataset_text(header: SliceHeader, keyword: str) -> str:
    """The value of ``keyword`` as stripped text, ``""`` when absent or empty."""
    value = _value(header, keyword)
    return "" if value is None else str(value).strip()


def check_stack(headers: Sequence[SliceHeader]) -> CtStack:
    """Validate the slices of one series and work out their grid; raise ``DicomSeriesError``."""
    if len(headers) < 2:
        shown = headers[0].file.name if headers else "no file"
        raise DicomSeriesError(
            f"A CT series needs at least 2 slices; this one has {len(headers)} ({shown}). "
            "Give the folder or archive that holds the whole series."
        )
    slices = [_read_slice(h) for h in headers]
    for candidate in slices:
        _check_like_first(slices[0], candidate)
    _check_unique_instances(slices)
    row, col, normal = _axes(slices[0])
    ordered = sorted(slices, key=lambda s: float(s.position_mm @ normal))
    heights_mm = np.array([float(s.position_mm @ normal) for s in ordered])
    _check_not_sheared(ordered, row, col)
    _check_steps(ordered, np.diff(heights_mm))
    step_mm = float(heights_mm[-1] - heights_mm[0]) / (len(ordered) - 1)
    first = ordered[0]
    return CtStack(
        slices=tuple(ordered),
        origin_mm=(
            float(first.position_mm[0]),
            float(first.position_mm[1]),
            float(first.position_mm[2]),
        ),
        spacing_mm=(float(first.pixel_spacing_mm[1]), float(first.pixel_spacing_mm[0]), step_mm),
        direction=tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()),
        patient_position=first.patient_position,
        frame_of_reference_uid=first.frame_of_reference_uid,
        warnings=_spacing_tag_warnings(first, step_mm),
    )


def read_hu_array(stack: CtStack) -> npt.NDArray[np.float32]:
    """Decode every slice with pydicom and apply its rescale: Hounsfield units, (z, y, x)."""
    first = stack.slices[0]
    volume = np.empty((len(stack.slices), first.rows, first.columns), dtype=np.float32)
    for k, item in enumerate(stack.slices):
        _decode_hu_into(item, volume[k])
    return volume


def stack_image(stack: CtStack, hu: npt.NDArray[np.float32]) -> sitk.Image:
    """The ``sitkFloat32`` image of ``hu`` (z, y, x) placed on the grid of ``stack``."""
    image = sitk.GetImageFromArray(hu, isVector=False)
    image.SetOrigin(stack.origin_mm)
    image.SetSpacing(stack.spacing_mm)
    image.SetDirection(stack.direction)
    return image


def _value(header: SliceHeader, keyword: str) -> object:
    try:
        return header.dataset.get(keyword)
    except Exception as exc:  # pydicom raises many types for a malformed element
        raise DicomSeriesError(
            f"{header.file.name}: {keyword} cannot be read ({exc}); the file is damaged or "
            "malformed, re-export the series."
        ) from None


def _numbers(header: SliceHeader, keyword: str, count: int) -> FloatArray:
    value = _value(header, keyword)
    name = header.file.name
    if value is None or value == "":
        raise DicomSeriesError(
            f"{name}: {keyword} is missing; a CT slice needs it. Re-export the series."
        )
    items: list[Any] = (
        list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    )
    try:
        numbers = np.array([float(v) for v in items], dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.array([], dtype=np.float64)
    if numbers.size != count or not np.all(np.isfinite(numbers)):
        raise DicomSeriesError(
            f"{name}: {keyword} is {value!r}, not {count} finite number(s); re-export the series."
        )
    return numbers


def _read_slice(header: SliceHeader) -> _Slice:
    tilt_deg = 0.0
    if _has(header, "GantryDetectorTilt"):
        tilt_deg = float(_numbers(header, "GantryDetectorTilt", 1)[0])
    if abs(tilt_deg) > _TILT_TOLERANCE_DEG:
        raise DicomSeriesError(
            f"{header.file.name}: Gantry/Detector Tilt is {tilt_deg:g}°; tilted acquisitions are "
            f"not supported because resampling is not implemented. Please {_RESAMPLE_ADVICE}."
        )
    return _Slice(
        header=header,
        sop_instance_uid=dataset_text(header, "SOPInstanceUID"),
        position_mm=_numbers(header, "ImagePositionPatient", 3),
        orientation=_numbers(header, "ImageOrientationPatient", 6),
        pixel_spacing_mm=_numbers(header, "PixelSpacing", 2),
        rows=int(_numbers(header, "Rows", 1)[0]),
        columns=int(_numbers(header, "Columns", 1)[0]),
        patient_position=dataset_text(header, "PatientPosition").upper(),
        frame_of_reference_uid=dataset_text(header, "FrameOfReferenceUID"),
        rescale_slope=float(_numbers(header, "RescaleSlope", 1)[0]),
        rescale_intercept=float(_numbers(header, "RescaleIntercept", 1)[0]),
    )


def _has(header: SliceHeader, keyword: str) -> bool:
    value = _value(header, keyword)
    return value is not None and value != ""


def _check_like_first(first: _Slice, other: _Slice) -> None:
    def refuse(what: str, theirs: object, ours: object) -> DicomSeriesError:
        return DicomSeriesError(
            f"{other.name}: {what} is {theirs} but {ours} in {first.name}; one series must share "
            "it across all slices. Give only the files of one series, or re-export it."
        )

    if np.max(np.abs(other.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
        raise refuse("ImageOrientationPatient", _fmt(other.orientation), _fmt(first.orientation))
    if (other.rows, other.columns) != (first.rows, first.columns):
        raise refuse(
            "Rows × Columns",
            f"{other.rows} × {other.columns}",
            f"{first.rows} × {first.columns}",
        )
    if np.max(np.abs(other.pixel_spacing_mm - first.pixel_spacing_mm)) > POSITION_TOLERANCE_MM:
        raise refuse(
            "PixelSpacing (mm)", _fmt(other.pixel_spacing_mm), _fmt(first.pixel_spacing_mm)
        )
    if other.patient_position != first.patient_position:
        raise refuse(
            "Patient Position",
            repr(other.patient_position or "missing"),
            repr(first.patient_position or "missing"),
        )
    if other.frame_of_reference_uid != first.frame_of_reference_uid:
        raise refuse(
            "FrameOfReferenceUID",
            repr(other.frame_of_reference_uid),
            repr(first.frame_of_reference_uid),
        )


def _axes(first: _Slice) -> tuple[FloatArray, FloatArray, FloatArray]:
    row, col = first.orientation[:3], first.orientation[3:]
    norms_ok = all(abs(float(np.linalg.norm(v)) - 1.0) <= ORIENTATION_TOLERANCE for v in (row, col))
    if not norms_ok or abs(float(row @ col)) > ORIENTATION_TOLERANCE:
        raise DicomSeriesError(
            f"{first.name}: ImageOrientationPatient {_fmt(first.orientation)} is not two "
            "orthogonal unit vectors; the file is malformed, re-export the series."
        )
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _check_unique_instances(slices: Sequence[_Slice]) -> None:
    seen: dict[str, _Slice] = {}
    for item in slices:
        earlier = seen.setdefault(item.sop_instance_uid, item)
        if earlier is not item:
            raise DicomSeriesError(
                f"{earlier.name} and {item.name} are the same SOP instance "
                f"({item.sop_instance_uid}): a duplicated file. Remove one of them."
            )


def _check_not_sheared(ordered: Sequence[_Slice], row: FloatArray, col: FloatArray) -> None:
    start = ordered[0]
    for item in ordered[1:]:
        offset = item.position_mm - start.position_mm
        in_plane_mm = (float(offset @ row), float(offset @ col))
        if max(abs(v) for v in in_plane_mm) > POSITION_TOLERANCE_MM:
            raise DicomSeriesError(
                f"{item.name}: the slice is offset by ({in_plane_mm[0]:.3f}, "
                f"{in_plane_mm[1]:.3f}) mm within the image plane from {start.name}; the slices "
                "are not stacked along their normal (a sheared or tilted stack), which is not "
                f"supported because resampling is not implemented. Please {_RESAMPLE_ADVICE}."
            )


def _check_steps(ordered: Sequence[_Slice], steps_mm: FloatArray) -> None:
    for k, step in enumerate(steps_mm):
        if step <= POSITION_TOLERANCE_MM:
            raise DicomSeriesError(
                f"{ordered[k].name} and {ordered[k + 1].name} are different SOP instances at "
                f"the same position ({_fmt(ordered[k].position_mm)} mm); the files hold two "
                "copies of a slice or two reconstructions. Give only one series' files."
            )
    median_mm = float(np.median(steps_mm))
    for k, step in enumerate(steps_mm):
        if step > GAP_FACTOR * median_mm:
            missing = round(step / median_mm) - 1
            raise DicomSeriesError(
                f"Slices are missing between {ordered[k].name} and {ordered[k + 1].name}: they "
                f"are {step:.3f} mm apart where the slice spacing is {median_mm:.3f} mm (about "
                f"{missing} missing). Re-send or re-export the complete series."
            )
    tolerance_mm = max(POSITION_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * median_mm)
    uneven = [k for k, step in enumerate(steps_mm) if abs(step - median_mm) > tolerance_mm]
    if uneven:
        k = uneven[0]
        values = ", ".join(f"{v:.3f}" for v in np.unique(np.round(steps_mm, 3))[:6])
        raise DicomSeriesError(
            f"The slice spacing is not uniform: steps of {values} mm (e.g. {steps_mm[k]:.3f} mm "
            f"between {ordered[k].name} and {ordered[k + 1].name}, median {median_mm:.3f} mm). "
            "Uneven spacing is not supported; re-export with a uniform spacing or resample."
        )


def _spacing_tag_warnings(first: _Slice, step_mm: float) -> tuple[str, ...]:
    if not _has(first.header, "SpacingBetweenSlices"):
        return ()
    tag_mm = float(_numbers(first.header, "SpacingBetweenSlices", 1)[0])
    if math.isclose(abs(tag_mm), step_mm, abs_tol=POSITION_TOLERANCE_MM):
        return ()
    return (
        f"SpacingBetweenSlices is {tag_mm:g} mm in {first.name} but the slice positions are "
        f"{step_mm:.3f} mm apart; the positions were used.",
    )


def _decode_hu_into(item: _Slice, out: npt.NDArray[np.float32]) -> None:
    """Decode one slice with pydicom and write ``stored × slope + intercept`` into ``out``."""
    try:
        dataset = dcmread(item.header.file.open(), force=False)
    except DicomSeriesError:
        raise
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise DicomSeriesError(
            f"{item.name}: the file cannot be read again for its pixels ({exc}); re-export it."
        ) from None
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntax_text = f"{syntax.name} ({syntax})" if syntax else "unknown"
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # missing plugin (RuntimeError), unknown syntax, corrupt stream
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DicomSeriesError(
            f"{item.name}: the pixel data in transfer syntax {syntax_text} cannot be decoded "
            f"({reason}). Install a decoder for it (pylibjpeg with pylibjpeg-openjpeg or "
            "pylibjpeg-libjpeg, or python-gdcm), or export the series uncompressed."
        ) from None
    if pixels.shape != (item.rows, item.columns):
        raise DicomSeriesError(
            f"{item.name}: the decoded pixel data has shape {pixels.shape}, not Rows × Columns "
            f"= {item.rows} × {item.columns}; the file is malformed, re-export the series."
        )
    np.multiply(pixels, np.float32(item.rescale_slope), out=out, casting="unsafe")
    out += np.float32(item.rescale_intercept)


def _fmt(values: FloatArray) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"
