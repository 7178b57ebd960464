"""A prepared planning CT kept on disk, so any worker process loads it instead of preparing it.

Preparing a planning CT (:func:`registration.rigid.prepare_planning`: read the DICOM series, clip,
block-average to every level) costs about 1.2 s for a 512 × 512 × 141 CT here; loading the
prepared arrays back costs a fraction of that. A worker process keeps a few prepared planning
CTs in memory; this file is what every other process (on any host sharing the data directory)
and every later day starts from.

One folder per planning CT and *preparation key*, ``<root>/prepared-<key>/``:

``meta.json``
    the format, the key, the :class:`~registration.volume.CtVolume`'s fields and the geometry
    (size, spacing, origin, direction) of every image, as JSON numbers (exact);
``volume.npy``
    the planning CT in HU, ``[k, j, i]``: int16 when that is lossless (DICOM CTs are whole HU
    numbers), float32 otherwise; read back as the ``sitkFloat32`` image the reader makes;
``level-<n>.npy``
    the prepared levels, coarse to fine, in their own pixel type.

The search side (:func:`registration.global_search.prepare_search`) is derived from level 0 when
the file is loaded, so it is never stale. The key is a hash of the file format and of the source
of the modules that read and prepare a planning CT (:data:`KEYED_MODULES`, the level spacings
included): change any of them and the files made before are not used (and are removed when the
new one is written), so a stored preparation is always what this code would make from the same
DICOM files. The DICOM files themselves are content-addressed by the caller (the folder sits
under the series' content hash).

Written to a staging folder (files flushed to disk) and renamed: a reader sees a whole folder or
none, and of two processes writing at once the first rename wins. A folder that cannot be read
(missing, truncated, another key) is reported as absent: the caller prepares from DICOM.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from registration.frames import PatientPosition
from registration.rigid import PreparedPlanning
from registration.volume import CtVolume

FORMAT = 1
#: the modules whose source decides what a prepared planning CT holds
KEYED_MODULES = (
    "registration.dicom_files",
    "registration.dicom_stack",
    "registration.dicom_series",
    "registration.volume",
    "registration.pyramid",
    "registration.rigid",
    "registration.prepared_file",
)
_PREFIX = "prepared-"
_STAGING_PREFIX = ".prepared-staging-"
#: a staging folder older than this was left by a process that died while writing
_STALE_STAGING_S = 3600.0
_VOLUME_FIELDS = (
    "series_instance_uid",
    "frame_of_reference_uid",
    "study_instance_uid",
    "patient_id",
    "modality",
    "series_description",
)


@functools.cache
def preparation_key() -> str:
    """16 hex digits naming the file format and the code that reads and prepares a planning CT."""
    import importlib

    digest = hashlib.sha256(f"format {FORMAT}\n".encode())
    for name in KEYED_MODULES:
        module = importlib.import_module(name)
        digest.update(name.encode())
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def prepared_folder(root: Path) -> Path:
    """Where this code's preparation of the planning CT of ``root`` is (or would be) stored."""
    return root / f"{_PREFIX}{preparation_key()}"


def load_prepared(root: Path) -> PreparedPlanning | None:
    """The stored preparation, or None when there is none this code can use.

    A folder that is there but cannot be read (truncated, damaged) is removed, so that the next
    :func:`save_prepared` writes it again.
    """
    folder = prepared_folder(root)
    if not folder.is_dir():
        return None
    try:
        return _read(folder)
    except (OSError, EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError):
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _read(folder: Path) -> PreparedPlanning:
    from registration.global_search import prepare_search

    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    if meta["format"] != FORMAT or meta["key"] != preparation_key():
        raise ValueError(f"{folder}: made by other code (format or key differ)")
    volume = _read_image(folder / "volume.npy", meta["volume"]["geometry"])
    if volume.GetPixelID() != sitk.sitkFloat32:
        volume = sitk.Cast(volume, sitk.sitkFloat32)
    levels = tuple(
        _read_image(folder / f"level-{n}.npy", geometry)
        for n, geometry in enumerate(meta["levels"])
    )
    fields = meta["volume"]
    ct = CtVolume(
        image=volume,
        patient_position=PatientPosition(fields["patient_position"]),
        sop_instance_uids=tuple(fields["sop_instance_uids"]),
        source_files=tuple(fields["source_files"]),
        warnings=tuple(fields["warnings"]),
        **{name: str(fields[name]) for name in _VOLUME_FIELDS},
    )
    return PreparedPlanning(ct, levels, prepare_search(levels[0]))  # IndexError: no level


def save_prepared(prepared: PreparedPlanning, root: Path) -> bool:
    """Store ``prepared`` under ``root``; False when it was stored already (nothing written).

    Preparations of this planning CT made by other code (another key) are removed once the new
    one is in place. Raises OSError when the disk refuses (nothing partial is left behind).
    """
    folder = prepared_folder(root)
    if (folder / "meta.json").is_file():
        return False
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(root)
    staging = root / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        volume = prepared.volume
        meta: dict[str, Any] = {
            "format": FORMAT,
            "key": preparation_key(),
            "volume": {
                "geometry": _write_image(staging / "volume.npy", volume.image, lossless_int16=True),
                "patient_position": volume.patient_position.value,
                "sop_instance_uids": list(volume.sop_instance_uids),
                "source_files": list(volume.source_files),
                "warnings": list(volume.warnings),
                **{name: getattr(volume, name) for name in _VOLUME_FIELDS},
            },
            "levels": [
                _write_image(staging / f"level-{n}.npy", level)
                for n, level in enumerate(prepared.levels)
            ],
        }
        _write_synced(staging / "meta.json", json.dumps(meta).encode("utf-8"))
        _fsync_folder(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if (folder / "meta.json").is_file():
                return False  # another process stored it first
            shutil.rmtree(folder, ignore_errors=True)  # damaged (no meta.json): replace it
            os.rename(staging, folder)
        _fsync_folder(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after the rename
    _remove_other_keys(root, keep=folder.name)
    return True


def _write_image(path: Path, image: sitk.Image, *, lossless_int16: bool = False) -> dict[str, Any]:
    array = sitk.GetArrayViewFromImage(image)
    if lossless_int16 and array.dtype != np.int16:
        narrow = array.astype(np.int16)
        if np.array_equal(narrow, array):
            array = narrow
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def _read_image(path: Path, geometry: dict[str, Any]) -> sitk.Image:
    array = np.load(path, allow_pickle=False)
    size = [int(v) for v in geometry["size"]]
    if array.shape != tuple(reversed(size)):
        raise ValueError(f"{path.name}: {array.shape} voxels where {size} (x, y, z) were stored")
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(v) for v in geometry["spacing"]])
    image.SetOrigin([float(v) for v in geometry["origin"]])
    image.SetDirection([float(v) for v in geometry["direction"]])
    return image


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _remove_stale_staging(root: Path) -> None:
    cutoff = time.time() - _STALE_STAGING_S
    for leftover in root.glob(f"{_STAGING_PREFIX}*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def _remove_other_keys(root: Path, keep: str) -> None:
    for other in root.glob(f"{_PREFIX}*"):
        if other.name != keep and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
