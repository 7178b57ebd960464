"""The CT series writer: what it puts in the files, and write → read round trips."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from registration.dicom_series import read_ct_series
from registration.dicom_write import write_ct_series
from registration.errors import InputError
from registration.frames import PatientPosition

# Typical ImageOrientationPatient per patient position, as direction matrices [r c n] with
# n = r × c, flattened row by row (SimpleITK order).
TYPICAL_DIRECTIONS = {
    PatientPosition.HFS: (1, 0, 0, 0, 1, 0, 0, 0, 1),  # r = +x, c = +y, n = +z
    PatientPosition.HFP: (-1, 0, 0, 0, -1, 0, 0, 0, 1),  # r = -x, c = -y, n = +z
    PatientPosition.FFS: (-1, 0, 0, 0, 1, 0, 0, 0, -1),  # r = -x, c = +y, n = -z
    PatientPosition.FFP: (1, 0, 0, 0, -1, 0, 0, 0, -1),  # r = +x, c = -y, n = -z
}


def ramp_image(
    size: tuple[int, int, int] = (16, 12, 8),
    spacing: tuple[float, float, float] = (0.9, 0.7, 2.5),
    origin: tuple[float, float, float] = (-7.25, 11.0, -30.5),
    direction: tuple[float, ...] = TYPICAL_DIRECTIONS[PatientPosition.HFS],
) -> sitk.Image:
    """A float32 image whose every voxel value is distinct, so any flip or swap shows."""
    nx, ny, nz = size
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx]
    image = sitk.GetImageFromArray((x + 20 * y + 400 * z - 1000).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in direction])
    return image


def assert_same_image(read: sitk.Image, written: sitk.Image) -> None:
    assert read.GetSize() == written.GetSize()
    np.testing.assert_allclose(read.GetOrigin(), written.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(read.GetSpacing(), written.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(read.GetDirection(), written.GetDirection(), atol=1e-6)
    expected = np.rint(sitk.GetArrayFromImage(written))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), expected)


@pytest.mark.parametrize("position", list(PatientPosition))
def test_each_patient_position_with_its_usual_orientation_round_trips(
    tmp_path: Path, position: PatientPosition
) -> None:
    image = ramp_image(direction=TYPICAL_DIRECTIONS[position])
    write_ct_series(image, tmp_path, patient_position=position, patient_id="P1")

    volume = read_ct_series(tmp_path)

    assert volume.patient_position is position
    assert volume.warnings == ()
    assert_same_image(volume.image, image)


def _rotation_from_quaternion(q: tuple[float, float, float, float]) -> np.ndarray:
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


quaternions = st.tuples(*[st.floats(-1.0, 1.0) for _ in range(4)]).filter(
    lambda q: float(np.linalg.norm(q)) > 0.1
)


@settings(max_examples=30, deadline=None)
@given(
    q=quaternions,
    size=st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 5)),
    spacing=st.tuples(*[st.floats(0.3, 6.0) for _ in range(3)]),
    origin=st.tuples(*[st.floats(-500.0, 500.0) for _ in range(3)]),
    position=st.sampled_from(list(PatientPosition)),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_rotation_spacing_and_origin_round_trip_to_a_tenth_of_a_micrometre(
    q: tuple[float, float, float, float],
    size: tuple[int, int, int],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    position: PatientPosition,
    seed: int,
) -> None:
    rotation = _rotation_from_quaternion(q)
    values = np.random.default_rng(seed).uniform(-1024.0, 3071.0, size=size[::-1])
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(rotation.ravel().tolist())
    with tempfile.TemporaryDirectory() as folder:
        write_ct_series(image, Path(folder), patient_position=position, patient_id="P1")
        volume = read_ct_series(folder)

    assert volume.patient_position is position
    assert_same_image(volume.image, image)


def test_a_left_handed_direction_comes_back_with_the_slice_axis_reversed(tmp_path: Path) -> None:
    """Same voxels at the same places; the reader always returns n = r × c as its third axis."""
    left_handed = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    image = ramp_image(direction=left_handed)
    write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P1")

    read = read_ct_series(tmp_path).image

    np.testing.assert_allclose(read.GetDirection(), (1, 0, 0, 0, 1, 0, 0, 0, 1), atol=1e-9)
    last = image.GetSize()[2] - 1
    np.testing.assert_allclose(
        read.GetOrigin(), image.TransformIndexToPhysicalPoint((0, 0, last)), atol=1e-4
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image)[::-1])


def test_gdcm_reads_a_written_oblique_series_with_the_same_geometry(tmp_path: Path) -> None:
    """An independent reader (SimpleITK's GDCM) agrees with what the writer meant."""
    c, s = np.cos(np.radians(20.0)), np.sin(np.radians(20.0))
    direction = (c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c)  # 20° about +y
    image = ramp_image(direction=direction)
    files = write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P")

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    gdcm_image = reader.Execute()

    assert_same_image(gdcm_image, image)


def test_pixel_spacing_is_written_row_spacing_first(tmp_path: Path) -> None:
    image = ramp_image(spacing=(0.5, 0.8, 3.0))
    files = write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P")

    header = pydicom.dcmread(files[0])

    assert [float(v) for v in header.PixelSpacing] == [0.8, 0.5]
    assert float(header.SliceThickness) == 3.0
    assert float(header.SpacingBetweenSlices) == 3.0
    assert (header.Rows, header.Columns) == (12, 16)


def test_slice_positions_follow_the_direction_of_the_third_axis(tmp_path: Path) -> None:
    image = ramp_image(direction=TYPICAL_DIRECTIONS[PatientPosition.FFS], origin=(1.0, 2.0, 3.0))
    files = write_ct_series(image, tmp_path, patient_position=PatientPosition.FFS, patient_id="P")

    positions = [[float(v) for v in pydicom.dcmread(f).ImagePositionPatient] for f in files]

    np.testing.assert_allclose(positions[1], [1.0, 2.0, 3.0 - 2.5])
    assert [float(v) for v in pydicom.dcmread(files[0]).ImageOrientationPatient] == [
        -1.0,
        0.0,
        0.0,
        0.0,
        1.0,
        0.0,
    ]


def test_values_are_rounded_to_integers_and_clipped_to_the_int16_range(tmp_path: Path) -> None:
    values = np.array([-40000.0, -1000.4, -0.6, 0.4, 1.5, 2.5, 40.49, 50000.0], dtype=np.float32)
    image = sitk.GetImageFromArray(values.reshape(2, 2, 2))
    write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P")

    read = sitk.GetArrayFromImage(read_ct_series(tmp_path).image).ravel()

    np.testing.assert_array_equal(read, [-32768, -1000, -1, 0, 2, 2, 40, 32767])


def test_headers_describe_a_ct_image_storage_series(tmp_path: Path) -> None:
    files = write_ct_series(
        ramp_image(),
        tmp_path,
        patient_position=PatientPosition.HFP,
        patient_id="P42",
        patient_name="Doe^Jane",
        study_instance_uid="1.2.3.4",
        series_instance_uid="1.2.3.4.5",
        frame_of_reference_uid="1.2.3.4.6",
        series_description="CTrue Image Set",
        series_number=7,
    )
    headers = [pydicom.dcmread(f) for f in files]

    first = headers[0]
    assert len(files) == 8
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (
        first.SOPClassUID == first.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    )
    assert (first.Modality, first.PatientPosition, first.PatientID) == ("CT", "HFP", "P42")
    assert str(first.PatientName) == "Doe^Jane"
    assert (first.StudyInstanceUID, first.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")
    assert first.FrameOfReferenceUID == "1.2.3.4.6"
    assert (first.SeriesDescription, first.SeriesNumber) == ("CTrue Image Set", 7)
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, 0.0)
    assert (first.BitsAllocated, first.BitsStored, first.PixelRepresentation) == (16, 16, 1)
    assert len(first.StudyDate) == 8 and len(first.StudyTime) == 6
    assert [h.InstanceNumber for h in headers] == list(range(1, 9))
    assert len({h.SOPInstanceUID for h in headers}) == 8
    assert all(h.SOPInstanceUID == h.file_meta.MediaStorageSOPInstanceUID for h in headers)


def test_uids_are_generated_when_not_given_and_differ_between_series(tmp_path: Path) -> None:
    first = write_ct_series(
        ramp_image(), tmp_path / "a", patient_position=PatientPosition.HFS, patient_id="P"
    )
    second = write_ct_series(
        ramp_image(), tmp_path / "b", patient_position=PatientPosition.HFS, patient_id="P"
    )
    a, b = pydicom.dcmread(first[0]), pydicom.dcmread(second[0])

    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert getattr(a, keyword) != getattr(b, keyword)
        assert pydicom.uid.UID(getattr(a, keyword)).is_valid


def test_extra_sets_overrides_and_deletes_elements_in_every_file(tmp_path: Path) -> None:
    files = write_ct_series(
        ramp_image(),
        tmp_path,
        patient_position=PatientPosition.HFS,
        patient_id="P",
        extra={"GantryDetectorTilt": 15, "Manufacturer": "TomoTherapy", "PatientPosition": None},
    )

    for header in (pydicom.dcmread(f) for f in files):
        assert float(header.GantryDetectorTilt) == 15.0
        assert header.Manufacturer == "TomoTherapy"
        assert "PatientPosition" not in header


def test_an_unknown_extra_keyword_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="GantryTiltish"):
        write_ct_series(
            ramp_image(),
            tmp_path,
            patient_position=PatientPosition.HFS,
            patient_id="P",
            extra={"GantryTiltish": 1},
        )
    assert list(tmp_path.iterdir()) == []


def test_a_two_dimensional_image_is_refused(tmp_path: Path) -> None:
    image = sitk.Image(4, 4, sitk.sitkFloat32)
    with pytest.raises(InputError, match="3-D"):
        write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P")


def test_an_image_with_nan_values_is_refused(tmp_path: Path) -> None:
    values = np.zeros((2, 2, 2), dtype=np.float32)
    values[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_ct_series(
            sitk.GetImageFromArray(values),
            tmp_path,
            patient_position=PatientPosition.HFS,
            patient_id="P",
        )


def test_a_direction_that_is_not_orthonormal_is_refused(tmp_path: Path) -> None:
    image = ramp_image()
    image.SetDirection((1, 0, 0, 0.1, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="not orthonormal"):
        write_ct_series(image, tmp_path, patient_position=PatientPosition.HFS, patient_id="P")


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    def write() -> list[Path]:
        return write_ct_series(
            ramp_image(),
            tmp_path,
            patient_position=PatientPosition.HFS,
            patient_id="P",
            series_instance_uid="1.2.3",
        )

    first_files = write()
    before = first_files[0].read_bytes()
    with pytest.raises(FileExistsError):
        write()
    assert first_files[0].read_bytes() == before
