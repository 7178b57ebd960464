"""The prepared planning CT on disk: what loads is exactly what would be prepared, or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from registration import prepared_file
from registration.frames import PatientPosition
from registration.prepared_file import load_prepared, prepared_folder, save_prepared
from registration.rigid import PreparedPlanning, prepare_planning
from registration.volume import CtVolume

FFS_DIRECTION = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def planning(values: np.ndarray) -> PreparedPlanning:
    """A small FFS planning CT with an origin and spacing no format would round silently."""
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((0.9765625, 0.9765625, 2.5))
    image.SetOrigin((-250.123456789, -164.1, 1234.56789012345))
    image.SetDirection(FFS_DIRECTION)
    volume = CtVolume(
        image=image,
        patient_position=PatientPosition.FFS,
        series_instance_uid="1.2.3.4",
        frame_of_reference_uid="1.2.3.5",
        study_instance_uid="1.2.3.6",
        patient_id="MVCT-SAMPLE-01",
        series_description="planning CT",
        sop_instance_uids=tuple(f"1.2.3.7.{k}" for k in range(values.shape[0])),
        source_files=tuple(f"/data/images/ab/abc/{k:03d}.dcm" for k in range(values.shape[0])),
        warnings=("slice spacing corrected",),
    )
    return prepare_planning(volume)


def whole_hu(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 3000, size=(12, 40, 36)).astype(np.float32)


def assert_same(loaded: PreparedPlanning, made: PreparedPlanning) -> None:
    pairs = [(loaded.volume.image, made.volume.image)]
    pairs += zip(loaded.levels, made.levels, strict=True)
    for a, b in pairs:
        assert a.GetPixelID() == b.GetPixelID() == sitk.sitkFloat32
        assert (a.GetSize(), a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == (
            b.GetSize(),
            b.GetSpacing(),
            b.GetOrigin(),
            b.GetDirection(),
        )
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    assert np.array_equal(loaded.search.values, made.search.values)
    fields = [f for f in CtVolume.__dataclass_fields__ if f != "image"]
    assert {f: getattr(loaded.volume, f) for f in fields} == {
        f: getattr(made.volume, f) for f in fields
    }


@pytest.mark.parametrize(
    "values", [whole_hu(), whole_hu() + 0.25], ids=["whole HU (int16)", "fractional HU"]
)
def test_a_saved_preparation_loads_as_exactly_what_was_prepared(
    tmp_path: Path, values: np.ndarray
) -> None:
    made = planning(values)
    assert save_prepared(made, tmp_path / "sha")
    stored = np.load(prepared_folder(tmp_path / "sha") / "volume.npy")
    assert stored.dtype == (np.int16 if np.all(values == np.round(values)) else np.float32)
    loaded = load_prepared(tmp_path / "sha")
    assert loaded is not None
    assert_same(loaded, made)


def test_saving_again_writes_nothing_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    made = planning(whole_hu())
    assert save_prepared(made, tmp_path) is True
    meta = prepared_folder(tmp_path) / "meta.json"
    written = meta.stat().st_mtime_ns
    assert save_prepared(made, tmp_path) is False
    assert meta.stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == [prepared_folder(tmp_path).name]


def test_nothing_stored_loads_as_none(tmp_path: Path) -> None:
    assert load_prepared(tmp_path / "never-prepared") is None


def test_a_damaged_file_is_not_loaded_and_is_written_again(tmp_path: Path) -> None:
    made = planning(whole_hu())
    save_prepared(made, tmp_path)
    level = prepared_folder(tmp_path) / "level-3.npy"
    level.write_bytes(level.read_bytes()[:200])  # truncated
    assert load_prepared(tmp_path) is None
    assert not prepared_folder(tmp_path).exists(), "the damaged folder was kept"
    assert save_prepared(made, tmp_path) is True
    loaded = load_prepared(tmp_path)
    assert loaded is not None
    assert_same(loaded, made)


def test_a_preparation_made_by_other_code_is_ignored_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = planning(whole_hu())
    monkeypatch.setattr(prepared_file, "preparation_key", lambda: "0123456789abcdef")
    save_prepared(planning(whole_hu(seed=2)), tmp_path)  # what older code made
    old = prepared_folder(tmp_path)
    monkeypatch.undo()
    assert old != prepared_folder(tmp_path)
    assert load_prepared(tmp_path) is None
    assert save_prepared(made, tmp_path) is True
    assert not old.exists()
    loaded = load_prepared(tmp_path)
    assert loaded is not None
    assert_same(loaded, made)


def test_the_key_names_the_source_of_the_code_that_reads_and_prepares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = prepared_file.preparation_key()
    assert len(key) == 16
    assert {"registration.dicom_series", "registration.pyramid", "registration.rigid"} <= set(
        prepared_file.KEYED_MODULES
    )
    prepared_file.preparation_key.cache_clear()
    monkeypatch.setattr(prepared_file, "KEYED_MODULES", prepared_file.KEYED_MODULES[:-1])
    try:
        assert prepared_file.preparation_key() != key
    finally:
        prepared_file.preparation_key.cache_clear()
