"""A synthetic cine as an Ultrasound Multi-frame Image (MONOCHROME2 uint8) with fake identifiers,
so that ingest's DICOM decoding and de-identification run on the synthetic cohort too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from echoclr.synth.anatomy import MACHINES, Study
from echoclr.synth.render import fan_geometry


def write_dicom(path: Path, frames: np.ndarray, study: Study, clip_index: int, seed: int,
                size: int) -> None:
    """Write an Ultrasound Multi-frame Image (MONOCHROME2 uint8) with fake identifiers.

    The patient name, ID and birth date are fake but present, so that ingest's de-identification
    is exercised; UIDs are derived from the seed, so files are byte-identical across runs.
    """
    clip, preset = study.clips[clip_index], study.preset
    rng = np.random.default_rng([seed, study.index, 11])

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[f"echoclr-synth-{seed}-{study.index}-{kind}"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = uid(f"sop-{clip_index}")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid(f"series-{clip_index}")
    ds.Modality, ds.Manufacturer = "US", MACHINES[preset.machine].name
    ds.InstitutionName = "SYNTHETIC HEART CENTER"
    ds.PatientName = f"SYNTH^{study.index:05d}"
    ds.PatientID = f"SYNTH-{study.patient_id}"
    year, month, day = rng.integers(1930, 1996), rng.integers(1, 13), rng.integers(1, 29)
    ds.PatientBirthDate = f"{year}{month:02d}{day:02d}"
    ds.PatientSex = "MF"[int(rng.integers(2))]
    ds.StudyDate = ds.ContentDate = preset.exam_date
    hours, minutes, seconds = clip.time_s // 3600, clip.time_s // 60 % 60, clip.time_s % 60
    ds.StudyTime = ds.ContentTime = f"{hours:02d}{minutes:02d}{seconds:02d}"
    ds.AccessionNumber, ds.StudyID = f"ACC{study.index:07d}", study.study_id
    ds.SeriesNumber, ds.InstanceNumber = clip_index + 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = size, size, len(frames)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.FrameTime = f"{1000.0 / preset.fps:.4f}"  # ms
    ds.CineRate = ds.RecommendedDisplayFrameRate = preset.fps
    depth, _, apex, radius = fan_geometry(study, clip, size)
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, int(apex)
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = size - 1, size - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = depth / 10.0 / radius
    ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = np.ascontiguousarray(frames, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
