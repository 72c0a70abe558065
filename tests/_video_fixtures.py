"""Tiny synthetic echo videos and DICOM files for the video, fan and ingest tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

# Identifiers written into synthetic DICOMs; none may appear anywhere in an ingest cache.
PHI = {
    "PatientName": "Doe^Janet",
    "PatientID": "MRN-99812734",
    "PatientBirthDate": "19450317",
    "StudyDate": "20190621",
}


def sector_mask(h: int, w: int, *, half_angle: float = 35.0) -> np.ndarray:
    """Bool (h, w) ultrasound sector with its apex at the top centre."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    apex_x, apex_y, radius = (w - 1) / 2, 2.0, h - 9.0
    dist = np.hypot(x - apex_x, y - apex_y)
    angle = np.degrees(np.arctan2(x - apex_x, y - apex_y))
    return (dist <= radius) & (np.abs(angle) <= half_angle) & (y >= apex_y)


def echo_frames(t: int = 12, h: int = 64, w: int = 80, *, seed: int = 0,
                overlay: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speckle that moves inside a sector, plus static burned-in "text" outside it.

    Returns:
        frames uint8 (t, h, w), the true sector bool (h, w), the overlay bool (h, w).
    """
    rng = np.random.default_rng(seed)
    sector = sector_mask(h, w)
    x = np.mgrid[:h, :w][1].astype(np.float32)
    frames = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        wall = 90 * np.exp(-((x - w / 2 - 8 * np.sin(i / 2)) ** 2) / 40)  # a moving bright wall
        speckle = rng.gamma(2.0, 25.0, size=(h, w)) + wall
        frames[i] = np.where(sector, np.clip(speckle + 20, 1, 255), 0).astype(np.uint8)
    text = np.zeros((h, w), bool)
    text[1:6, 1:14] = True  # a label block, top left
    text[h - 4:h - 1, 2:w - 2] = True  # an ECG-like band along the bottom
    text[8:30, w - 4:w - 2] = True  # a depth scale, right edge
    text &= ~sector
    if overlay:
        frames[:, text] = 230
    return frames, sector, text


def write_dicom(path: str | Path, frames: np.ndarray, *, photometric: str = "MONOCHROME2",
                bits: int = 8, frame_time_ms: float | None = 33.333, cine_rate: int | None = None,
                number_of_frames: int | None = None, regions: list | None = None,
                pixel_data: bytes | None = None, with_pixels: bool = True,
                transfer_syntax=ExplicitVRLittleEndian, **extra) -> Path:
    """Write an uncompressed (unless ``pixel_data`` is given) ultrasound DICOM with PHI set.

    ``frames``: (T, H, W) or (T, H, W, 3) values already in the photometric's colour space;
    ``number_of_frames`` overrides the tag (to disagree with the data on purpose).
    """
    path = Path(path)
    frames = np.asarray(frames)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    if frames.ndim == 4:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.NumberOfFrames = number_of_frames if number_of_frames is not None else len(frames)
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    if cine_rate is not None:
        ds.CineRate = cine_rate
    if regions:
        ds.SequenceOfUltrasoundRegions = [_region(box) for box in regions]
    for keyword, value in extra.items():  # last: may override any tag above
        setattr(ds, keyword, value)
    if with_pixels:
        dtype = np.uint16 if bits > 8 else np.uint8
        ds.PixelData = pixel_data if pixel_data is not None else frames.astype(dtype).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _region(box) -> pydicom.Dataset:
    """A region item from (x0, y0, x1, y1) (a 2D tissue region) or (x0, y0, x1, y1,
    RegionSpatialFormat, RegionDataType)."""
    item = pydicom.Dataset()
    (item.RegionLocationMinX0, item.RegionLocationMinY0,
     item.RegionLocationMaxX1, item.RegionLocationMaxY1) = box[:4]
    item.RegionSpatialFormat, item.RegionDataType = box[4:] if len(box) == 6 else (1, 1)
    return item


def make_archive(root: str | Path) -> Path:
    """A tiny echo archive and its manifest: 5 AVIs (one at 12 fps), a multi-frame DICOM with
    PHI and a plausible 2D region, a corrupt file and a missing one. Returns the manifest path."""
    import pandas as pd

    from echoclr.data.video import write_video

    root = Path(root)
    folder = root / "exams é 1"
    folder.mkdir(parents=True)
    rows = []
    for k in range(5):
        frames = echo_frames(t=12, h=48, w=64, seed=k)[0]
        write_video(folder / f"clip {k}.avi", frames, fps=12 if k == 3 else 30)
        rows.append(dict(path=f"exams é 1/clip {k}.avi", study_id=f"S{k // 2}",
                         patient_id=f"P{k // 2}", view="PLAX" if k != 4 else "A4C",
                         lvh=(k // 2) % 2))
    frames = echo_frames(t=10, h=48, w=64, seed=7)[0]
    write_dicom(root / "cine.dcm", frames, regions=[(0, 0, 63, 47)])
    rows.append(dict(path="cine.dcm", study_id="S9", patient_id="P9", view="PLAX", lvh=1))
    (root / "corrupt.avi").write_text("this is not a video\n" * 20)
    rows.append(dict(path="corrupt.avi", study_id="S8", patient_id="P8", view="PLAX", lvh=0))
    rows.append(dict(path="gone.avi", study_id="S7", patient_id="P7", view="PLAX", lvh=0))
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def pack_ybr_full_422(ybr: np.ndarray) -> bytes:
    """Native YBR_FULL_422 pixel data (Y0 Y1 Cb Cr per pixel pair) from (T, H, W, 3) YBR_FULL
    whose chroma is constant over each horizontal pixel pair."""
    t, h, w, _ = ybr.shape
    packed = np.empty((t, h, w // 2, 4), np.uint8)
    packed[..., 0], packed[..., 1] = ybr[:, :, 0::2, 0], ybr[:, :, 1::2, 0]
    packed[..., 2], packed[..., 3] = ybr[:, :, 0::2, 1], ybr[:, :, 0::2, 2]
    return packed.tobytes()
