"""The strict CT series reader: what it accepts, and every series it refuses and why.

Series are written with :func:`registration.dicom_write.write_ct_series` into ``tmp_path`` and
then damaged with pydicom where a test needs a bad one.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from registration.dicom_series import (
    RESEARCH_FORMAT_WARNING,
    SeriesSummary,
    list_ct_series,
    read_ct_series,
    read_volume,
)
from registration.dicom_write import write_ct_series
from registration.errors import (
    DicomSeriesError,
    InputError,
    SeriesSelectionError,
    UnsupportedPositionError,
)
from registration.frames import PatientPosition

THORAX = Path(__file__).resolve().parents[3] / "shared" / "data" / "thorax_4dct_phase00_dicom"
SPACING_MM = (0.9, 0.7, 2.5)
ORIGIN_MM = (-7.25, 11.0, -30.5)


def ramp_image(size: tuple[int, int, int] = (16, 12, 8)) -> sitk.Image:
    """A float32 HU image whose every voxel value is distinct, so any flip or swap shows."""
    nx, ny, nz = size
    z, y, x = np.mgrid[0:nz, 0:ny, 0:nx]
    image = sitk.GetImageFromArray((x + 20 * y + 400 * z - 1000).astype(np.float32))
    image.SetSpacing(SPACING_MM)
    image.SetOrigin(ORIGIN_MM)
    return image


def write_series(
    folder: Path,
    size: tuple[int, int, int] = (16, 12, 8),
    position: PatientPosition = PatientPosition.HFS,
    **kwargs: object,
) -> list[Path]:
    return write_ct_series(
        ramp_image(size),
        folder,
        patient_position=position,
        patient_id="P1",
        **kwargs,  # type: ignore[arg-type]
    )


def edit(path: Path, **elements: object) -> None:
    """Set (or with ``None`` delete) elements of one written file, in place."""
    dataset = pydicom.dcmread(path)
    for keyword, value in elements.items():
        if value is None:
            del dataset[keyword]
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)


def shift_position(path: Path, delta_mm: tuple[float, float, float]) -> None:
    dataset = pydicom.dcmread(path)
    moved = [float(v) + d for v, d in zip(dataset.ImagePositionPatient, delta_mm, strict=True)]
    dataset.ImagePositionPatient = [f"{v:.6f}" for v in moved]
    dataset.save_as(path, enforce_file_format=True)


# --- what is accepted ---------------------------------------------------------------------


def test_a_written_series_reads_back_with_its_values_geometry_and_identifiers(
    tmp_path: Path,
) -> None:
    files = write_series(tmp_path, series_description="CTrue Image Set")

    volume = read_ct_series(tmp_path)

    image = volume.image
    assert image.GetPixelID() == sitk.sitkFloat32
    assert image.GetSize() == (16, 12, 8)
    np.testing.assert_allclose(image.GetOrigin(), ORIGIN_MM, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), SPACING_MM, atol=1e-6)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ramp_image())
    )
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert volume.sop_instance_uids == tuple(h.SOPInstanceUID for h in headers)
    assert volume.source_files == tuple(str(f) for f in files)
    assert volume.series_instance_uid == headers[0].SeriesInstanceUID
    assert volume.frame_of_reference_uid == headers[0].FrameOfReferenceUID
    assert volume.study_instance_uid == headers[0].StudyInstanceUID
    assert (volume.patient_id, volume.modality) == ("P1", "CT")
    assert volume.series_description == "CTrue Image Set"
    assert volume.patient_position is PatientPosition.HFS
    assert volume.warnings == ()


def test_a_list_of_files_in_any_order_gives_the_same_volume(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    shuffled = [files[i] for i in (5, 0, 7, 2, 1, 6, 3, 4)]

    from_list = read_ct_series(shuffled)
    from_folder = read_ct_series(tmp_path)

    assert from_list.sop_instance_uids == from_folder.sop_instance_uids
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(from_list.image), sitk.GetArrayFromImage(from_folder.image)
    )
    assert from_list.image.GetOrigin() == from_folder.image.GetOrigin()


def test_a_series_in_a_subfolder_is_found_and_a_dicomdir_is_skipped(tmp_path: Path) -> None:
    write_series(tmp_path / "patient" / "study" / "series")
    (tmp_path / "DICOMDIR").write_bytes(b"an index, not an image")

    volume = read_ct_series(tmp_path)

    assert volume.image.GetSize() == (16, 12, 8)


def test_a_dicomdir_index_under_another_name_is_skipped_by_its_sop_class(tmp_path: Path) -> None:
    write_series(tmp_path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    index = Dataset()
    index.file_meta = meta
    index.FileSetID = "EXPORT"
    index.DirectoryRecordSequence = []
    index.save_as(tmp_path / "index.dcm", enforce_file_format=True)

    volume = read_ct_series(tmp_path)

    assert volume.image.GetSize() == (16, 12, 8)
    assert volume.warnings == ()


def test_rescale_slope_and_intercept_are_applied_to_give_hounsfield_units(tmp_path: Path) -> None:
    write_series(tmp_path, extra={"RescaleSlope": "2", "RescaleIntercept": "-1024"})

    hu = sitk.GetArrayFromImage(read_ct_series(tmp_path).image)

    np.testing.assert_array_equal(hu, 2 * sitk.GetArrayFromImage(ramp_image()) - 1024)


def test_an_rle_compressed_series_is_decoded_by_pydicom(tmp_path: Path) -> None:
    for path in write_series(tmp_path):
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)
        dataset.save_as(path, enforce_file_format=True)

    volume = read_ct_series(tmp_path)

    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(ramp_image())
    )


def test_an_rtstruct_beside_the_ct_series_is_ignored_with_a_warning(tmp_path: Path) -> None:
    write_series(tmp_path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    rtstruct = Dataset()
    rtstruct.file_meta = meta
    rtstruct.SOPClassUID = meta.MediaStorageSOPClassUID
    rtstruct.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    rtstruct.Modality = "RTSTRUCT"
    rtstruct.SeriesInstanceUID = generate_uid()
    rtstruct.save_as(tmp_path / "RS.dcm", enforce_file_format=True)

    volume = read_ct_series(tmp_path)

    assert volume.image.GetSize() == (16, 12, 8)
    assert len(volume.warnings) == 1
    assert "RTSTRUCT" in volume.warnings[0] and "RS.dcm" in volume.warnings[0]


def test_a_spacing_between_slices_tag_that_disagrees_is_tolerated_with_a_warning(
    tmp_path: Path,
) -> None:
    write_series(tmp_path, extra={"SpacingBetweenSlices": "3.0"})

    volume = read_ct_series(tmp_path)

    assert volume.image.GetSpacing()[2] == pytest.approx(2.5)
    assert any("SpacingBetweenSlices is 3 mm" in w for w in volume.warnings)


def test_a_zip_archive_reads_like_the_folder_it_was_made_from(tmp_path: Path) -> None:
    files = write_series(tmp_path / "series")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, arcname=f"export/{f.name}")

    from_zip = read_ct_series(archive)

    from_folder = read_ct_series(tmp_path / "series")
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(from_zip.image), sitk.GetArrayFromImage(from_folder.image)
    )
    assert from_zip.image.GetOrigin() == from_folder.image.GetOrigin()
    assert from_zip.sop_instance_uids == from_folder.sop_instance_uids
    assert from_zip.source_files[0] == f"{archive}!export/{files[0].name}"


@pytest.mark.parametrize("member", ["../evil.dcm", "/etc/evil.dcm", "ok/../../evil.dcm"])
def test_a_zip_archive_with_an_unsafe_member_path_is_refused(tmp_path: Path, member: str) -> None:
    files = write_series(tmp_path / "series")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(files[0], arcname=files[0].name)
        zf.writestr(zipfile.ZipInfo(member), files[1].read_bytes())

    with pytest.raises(DicomSeriesError, match="unsafe path") as caught:
        read_ct_series(archive)
    assert member in str(caught.value) and "upload.zip" in str(caught.value)


def test_read_volume_reads_a_dicom_folder_as_a_series(tmp_path: Path) -> None:
    write_series(tmp_path, position=PatientPosition.FFP)

    volume = read_volume(tmp_path)

    assert volume.patient_position is PatientPosition.FFP
    assert volume.image.GetSize() == (16, 12, 8)


# --- series selection ---------------------------------------------------------------------


def _two_ct_series_and_an_mr(folder: Path) -> tuple[str, str]:
    daily = write_series(folder / "a", series_description="daily MVCT")
    planning = write_series(folder / "b", size=(16, 12, 6), series_description="planning kVCT")
    write_series(folder / "c", modality="MR", series_description="T1")
    return (
        pydicom.dcmread(daily[0]).SeriesInstanceUID,
        pydicom.dcmread(planning[0]).SeriesInstanceUID,
    )


def test_two_ct_series_without_a_choice_are_refused_listing_both(tmp_path: Path) -> None:
    daily_uid, planning_uid = _two_ct_series_and_an_mr(tmp_path)

    with pytest.raises(SeriesSelectionError) as caught:
        read_ct_series(tmp_path)

    message = str(caught.value)
    assert daily_uid in message and "'daily MVCT', 8 files" in message
    assert planning_uid in message and "'planning kVCT', 6 files" in message
    assert "T1" not in message
    assert set(caught.value.series_uids) == {daily_uid, planning_uid}


def test_the_named_series_is_read_and_the_others_are_reported(tmp_path: Path) -> None:
    _, planning_uid = _two_ct_series_and_an_mr(tmp_path)

    volume = read_ct_series(tmp_path, series_uid=planning_uid)

    assert volume.series_instance_uid == planning_uid
    assert volume.image.GetSize() == (16, 12, 6)
    assert "Ignored 2 other series" in volume.warnings[0]


def test_a_series_uid_that_is_not_there_is_refused_listing_the_ct_series(tmp_path: Path) -> None:
    daily_uid, planning_uid = _two_ct_series_and_an_mr(tmp_path)

    with pytest.raises(SeriesSelectionError, match=r"1\.2\.3\.999 is not in") as caught:
        read_ct_series(tmp_path, series_uid="1.2.3.999")
    assert daily_uid in str(caught.value) and planning_uid in str(caught.value)


def test_naming_a_series_that_is_not_ct_is_refused_with_its_modality(tmp_path: Path) -> None:
    files = write_series(tmp_path, modality="MR")
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID

    with pytest.raises(DicomSeriesError, match="is not CT: it is the MR series") as caught:
        read_ct_series(tmp_path, series_uid=uid)
    assert files[0].name in str(caught.value)


def test_list_ct_series_summarises_only_the_ct_series(tmp_path: Path) -> None:
    daily_uid, planning_uid = _two_ct_series_and_an_mr(tmp_path)

    summaries = list_ct_series(tmp_path)

    assert {s.series_instance_uid: s for s in summaries} == {
        daily_uid: SeriesSummary(
            daily_uid, "CT", "daily MVCT", 8, "P1", summaries[0].study_instance_uid
        ),
        planning_uid: SeriesSummary(
            planning_uid, "CT", "planning kVCT", 6, "P1", summaries[1].study_instance_uid
        ),
    }


# --- what is refused: sources and files ----------------------------------------------------


def test_a_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomSeriesError, match="does not exist"):
        read_ct_series(tmp_path / "nowhere")


def test_a_file_that_is_not_dicom_is_refused_by_name(tmp_path: Path) -> None:
    write_series(tmp_path)
    (tmp_path / "notes.txt").write_text("patient was coughing")

    with pytest.raises(DicomSeriesError, match=r"notes\.txt is not a DICOM file"):
        read_ct_series(tmp_path)


def test_a_listed_file_that_does_not_exist_is_refused_by_name(tmp_path: Path) -> None:
    files = write_series(tmp_path)

    with pytest.raises(DicomSeriesError, match=r"missing\.dcm"):
        read_ct_series([*files, tmp_path / "missing.dcm"])


def test_a_source_with_no_ct_series_is_refused_naming_what_was_found(tmp_path: Path) -> None:
    files = write_series(tmp_path, modality="MR")

    with pytest.raises(DicomSeriesError, match="No CT series") as caught:
        read_ct_series(tmp_path)
    assert "MR series" in str(caught.value) and files[0].name in str(caught.value)


def test_a_multiframe_enhanced_ct_is_refused_as_unsupported(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    edit(files[2], SOPClassUID=pydicom.uid.EnhancedCTImageStorage, NumberOfFrames=8)

    with pytest.raises(DicomSeriesError, match="multi-frame") as caught:
        read_ct_series(tmp_path)
    assert files[2].name in str(caught.value) and "Enhanced CT" in str(caught.value)


def test_a_file_of_another_sop_class_inside_the_ct_series_is_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    edit(files[4], SOPClassUID=pydicom.uid.SecondaryCaptureImageStorage)

    with pytest.raises(DicomSeriesError, match="Secondary Capture") as caught:
        read_ct_series(tmp_path)
    assert files[4].name in str(caught.value)


def test_undecodable_compressed_pixel_data_is_refused_naming_the_transfer_syntax(
    tmp_path: Path,
) -> None:
    files = write_series(tmp_path)
    dataset = pydicom.dcmread(files[3])
    dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEG2000Lossless
    dataset.save_as(files[3], enforce_file_format=True)

    with pytest.raises(DicomSeriesError, match="JPEG 2000") as caught:
        read_ct_series(tmp_path)
    assert files[3].name in str(caught.value) and "decode" in str(caught.value)


def test_a_missing_rescale_intercept_is_refused_by_file(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    edit(files[6], RescaleIntercept=None)

    with pytest.raises(DicomSeriesError, match="RescaleIntercept is missing") as caught:
        read_ct_series(tmp_path)
    assert files[6].name in str(caught.value)


# --- what is refused: geometry ---------------------------------------------------------------


def test_fewer_than_two_slices_are_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path)

    with pytest.raises(DicomSeriesError, match="at least 2 slices") as caught:
        read_ct_series(files[:1])
    assert files[0].name in str(caught.value)


def test_a_gantry_tilt_is_refused_with_its_value_and_the_advice_to_resample(
    tmp_path: Path,
) -> None:
    files = write_series(tmp_path, extra={"GantryDetectorTilt": 15})

    with pytest.raises(DicomSeriesError, match="Gantry/Detector Tilt is 15°") as caught:
        read_ct_series(tmp_path)
    assert files[0].name in str(caught.value) and "resample" in str(caught.value)


def test_a_sheared_stack_is_refused_naming_the_offset_slice(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    for k, path in enumerate(files):
        shift_position(path, (0.0, 0.5 * k, 0.0))  # slices slide along y: 11° of shear

    with pytest.raises(DicomSeriesError, match="sheared") as caught:
        read_ct_series(tmp_path)
    assert files[1].name in str(caught.value) and "resample" in str(caught.value)


def test_an_in_plane_drift_below_a_hundredth_of_a_millimetre_is_accepted(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    shift_position(files[5], (0.004, -0.004, 0.0))

    assert read_ct_series(tmp_path).image.GetSize() == (16, 12, 8)


def test_a_missing_slice_is_refused_naming_the_files_around_the_gap(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    files[3].unlink()

    with pytest.raises(DicomSeriesError, match="Slices are missing") as caught:
        read_ct_series(tmp_path)
    message = str(caught.value)
    assert files[2].name in message and files[4].name in message
    assert "5.000 mm apart" in message and "2.500 mm" in message


def test_non_uniform_spacing_is_refused_reporting_the_steps(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    shift_position(files[5], (0.0, 0.0, 0.75))  # steps 3.25 and 1.75 mm around slice 5

    with pytest.raises(DicomSeriesError, match="not uniform") as caught:
        read_ct_series(tmp_path)
    message = str(caught.value)
    assert "1.750" in message and "3.250" in message and files[5].name in message


def test_two_instances_at_one_position_are_refused_naming_both(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    twin = tmp_path / "twin.dcm"
    shutil.copy(files[2], twin)
    edit(twin, SOPInstanceUID=generate_uid())

    with pytest.raises(DicomSeriesError, match="same position") as caught:
        read_ct_series(tmp_path)
    assert files[2].name in str(caught.value) and "twin.dcm" in str(caught.value)


def test_a_duplicated_file_is_refused_naming_both_copies(tmp_path: Path) -> None:
    files = write_series(tmp_path)
    shutil.copy(files[2], tmp_path / "copy.dcm")

    with pytest.raises(DicomSeriesError, match="same SOP instance") as caught:
        read_ct_series(tmp_path)
    assert files[2].name in str(caught.value) and "copy.dcm" in str(caught.value)


@pytest.mark.parametrize(
    ("elements", "named"),
    [
        ({"ImageOrientationPatient": [1, 0, 0, 0, 0.99, 0.141]}, "ImageOrientationPatient"),
        ({"Rows": 10}, "Rows × Columns"),
        ({"PixelSpacing": [0.7, 0.95]}, "PixelSpacing"),
        ({"FrameOfReferenceUID": "1.2.3.4"}, "FrameOfReferenceUID"),
        ({"PatientPosition": "HFP"}, "Patient Position"),
    ],
    ids=["orientation", "matrix", "pixel spacing", "frame of reference", "patient position"],
)
def test_a_slice_that_differs_from_the_others_is_refused_by_name(
    tmp_path: Path, elements: dict[str, object], named: str
) -> None:
    files = write_series(tmp_path)
    edit(files[4], **elements)

    with pytest.raises(DicomSeriesError, match=named) as caught:
        read_ct_series(tmp_path)
    assert files[4].name in str(caught.value)


def test_orientation_cosines_that_are_not_orthonormal_are_refused(tmp_path: Path) -> None:
    files = write_series(tmp_path, extra={"ImageOrientationPatient": [1, 0, 0, 0.2, 1, 0]})

    with pytest.raises(DicomSeriesError, match="not two orthogonal unit vectors") as caught:
        read_ct_series(tmp_path)
    assert files[0].name in str(caught.value)


# --- patient position ------------------------------------------------------------------------


def test_a_missing_patient_position_is_refused_naming_the_file(tmp_path: Path) -> None:
    files = write_series(tmp_path, extra={"PatientPosition": None})

    with pytest.raises(UnsupportedPositionError, match="missing") as caught:
        read_ct_series(tmp_path)
    assert files[0].name in str(caught.value)


def test_a_missing_patient_position_may_be_given_by_the_caller_with_a_warning(
    tmp_path: Path,
) -> None:
    write_series(tmp_path, extra={"PatientPosition": None})

    volume = read_ct_series(tmp_path, patient_position="FFS")

    assert volume.patient_position is PatientPosition.FFS
    assert any("FFS given by the caller" in w for w in volume.warnings)


def test_a_decubitus_patient_position_is_refused_with_its_value(tmp_path: Path) -> None:
    files = write_series(tmp_path, extra={"PatientPosition": "HFDL"})

    with pytest.raises(UnsupportedPositionError, match="'HFDL' is not supported") as caught:
        read_ct_series(tmp_path)
    assert files[0].name in str(caught.value)


def test_a_caller_position_that_contradicts_the_header_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path, position=PatientPosition.HFS)

    with pytest.raises(DicomSeriesError, match="HFS in the series but HFP was given"):
        read_ct_series(tmp_path, patient_position=PatientPosition.HFP)


# --- research formats ----------------------------------------------------------------------


def test_a_research_format_without_a_patient_position_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "planning.mha"
    sitk.WriteImage(ramp_image(), str(path))

    with pytest.raises(InputError, match="give the patient position explicitly") as caught:
        read_volume(path)
    assert "planning.mha" in str(caught.value)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_a_research_format_is_read_with_the_position_the_caller_gives(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"planning{suffix}"
    sitk.WriteImage(sitk.Cast(ramp_image(), sitk.sitkInt16), str(path))

    volume = read_volume(path, patient_position="HFP")

    assert volume.patient_position is PatientPosition.HFP
    assert volume.warnings == (RESEARCH_FORMAT_WARNING,)
    assert volume.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(volume.image.GetOrigin(), ORIGIN_MM, atol=1e-4)
    np.testing.assert_allclose(volume.image.GetSpacing(), SPACING_MM, atol=1e-4)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(volume.image), sitk.GetArrayFromImage(ramp_image())
    )


# --- real data -------------------------------------------------------------------------------


@pytest.mark.skipif(not THORAX.is_dir(), reason=f"real CT series not available at {THORAX}")
def test_the_real_thorax_series_reads_with_its_known_geometry_and_agrees_with_gdcm() -> None:
    volume = read_ct_series(THORAX)

    image = volume.image
    assert image.GetSize() == (512, 512, 141)
    np.testing.assert_allclose(image.GetSpacing(), (0.9765625, 0.9765625, 2.0), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), (-250.0, -164.0, -164.5), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    assert volume.patient_position is PatientPosition.HFS
    assert len(set(volume.sop_instance_uids)) == 141
    hu = sitk.GetArrayViewFromImage(image)
    assert hu.min() == -1024.0  # stored 0 with RescaleIntercept -1024

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(THORAX)))
    reference = reader.Execute()
    np.testing.assert_allclose(reference.GetOrigin(), image.GetOrigin(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(reference), hu)
