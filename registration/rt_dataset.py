"""Small helpers shared by the RT Structure Set and RT Plan readers and writer.

Dates and times are DICOM DA (``YYYYMMDD``) and TM (``HHMMSS.FFFFFF``, trailing parts optional)
values read as naive local datetimes, as DICOM stores them; a missing or unreadable date gives
``None`` (such an object sorts before every dated one when the latest is chosen).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from registration.errors import PlanningPackageError

__all__ = [
    "RT_PLAN_STORAGE",
    "RT_STRUCTURE_SET_STORAGE",
    "dicom_datetime",
    "load_rt_dataset",
    "text",
]

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"


def load_rt_dataset(
    source: Dataset | str | os.PathLike[str], sop_class_uid: str, what: str
) -> Dataset:
    """``source`` itself or the file it names, checked to be of ``sop_class_uid``."""
    if isinstance(source, Dataset):
        dataset = source
        name = "the dataset given"
    else:
        path = Path(source)
        name = str(path)
        try:
            dataset = dcmread(path)
        except (InvalidDicomError, OSError) as error:
            raise PlanningPackageError(f"{name} cannot be read as DICOM ({error}).") from None
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
