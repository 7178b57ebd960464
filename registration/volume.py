"""A CT volume as the core uses it: a SimpleITK image in LPS plus what DICOM told us about it."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from registration.frames import PatientPosition


@dataclass(frozen=True)
class CtVolume:
    """One CT series, read and checked.

    ``image`` is a 3-D ``sitkFloat32`` image in Hounsfield units (rescale slope/intercept applied)
    whose origin, spacing and direction are in the DICOM patient frame (LPS, mm), slices ordered
    along the slice normal. ``warnings`` lists what was corrected or assumed while reading.
    """

    image: sitk.Image
    patient_position: PatientPosition
    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    study_instance_uid: str = ""
    patient_id: str = ""
    modality: str = "CT"
    series_description: str = ""
    sop_instance_uids: tuple[str, ...] = ()
    source_files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
