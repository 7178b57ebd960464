"""Small helpers shared by the RT Structure Set and RT Plan readers and writer.

Dates and times are DICOM DA (``YYYYMMDD``) and TM (``HHMMSS.FFFFFF``, trailing parts optional)
values read as naive local datetimes, as DICOM stores them; a missing or unreadable date gives
``None`` (such an object sorts before every dated one when the latest is chosen).
"""

from __future__ import annotations

import os
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from registration.errors import PlanningPackageError

__all__ = [
    "RT_PLAN_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "RtSource",
    "dicom_datetime",
    "load_rt_dataset",
    "text",
]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


#: What the readers accept: a dataset, a file path, the file's bytes, or an open binary file.
RtSource = Dataset | str | os.PathLike[str] | bytes | BinaryIO


def load_rt_dataset(source: RtSource, sop_class_uid: str, what: str) -> Dataset:
    """``source`` read (or taken as it is), checked to be of ``sop_class_uid``."""
    if isinstance(source, Dataset):
        return _checked(source, "the dataset given", sop_class_uid, what)
    readable: BytesIO | Path | BinaryIO
    if isinstance(source, bytes):
        name, readable = "the uploaded file", BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        name, readable = str(source), Path(source)
    else:
        name, readable = "the uploaded file", cast(BinaryIO, source)
    try:
        dataset = dcmread(readable)
    except (InvalidDicomError, OSError, EOFError) as error:
        raise PlanningPackageError(f"{name} cannot be read as DICOM ({error}).") from None
    return _checked(dataset, name, sop_class_uid, what)


def _checked(dataset: Dataset, name: str, sop_class_uid: str, what: str) -> Dataset:
    found = str(dataset.get("SOPClassUID", ""))
    if found != sop_class_uid:
        raise PlanningPackageError(
            f"{name} is not an {what}: its SOP Class UID is {found or 'missing'!r}, "
            f"an {what} has {sop_class_uid}."
        )
    return dataset


def text(dataset: Dataset, keyword: str) -> str:
    """An element's value as a stripped string; ``""`` when absent or empty."""
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()


def dicom_datetime(date: str, time: str) -> datetime | None:
    """A DA and a TM value as one naive datetime; ``None`` without a readable date."""
    date, time = date.strip(), time.strip().split(".")[0]
    if len(date) != 8 or not date.isdigit():
        return None
    time = (time if time.isdigit() else "")[:6].ljust(6, "0")
    try:
        return datetime.strptime(date + time, "%Y%m%d%H%M%S")
    except ValueError:
        return None
