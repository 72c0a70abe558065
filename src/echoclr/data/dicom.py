"""DICOM cine decoding for :func:`echoclr.data.video.read_video`: pixel data in any transfer
syntax pydicom's plugins handle, photometric conversion to uint8 grey/RGB, frame rate from Cine
Rate / Frame Time, and non-identifying metadata (identifiers only as keyed hashes).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np
import pydicom
import pydicom.encaps
import pydicom.pixels

from echoclr.data.video_types import Video, VideoReadError, check_size, collapse_gray


def read_dicom(path: Path, max_frames: int | None, salt: str) -> Video:
    try:
        # Large values (the pixel data) are read only when touched, after the size checks.
        ds = pydicom.dcmread(path, force=True, defer_size="1 MB")
    except Exception as err:
        raise VideoReadError(path, f"unreadable DICOM ({type(err).__name__}: {err})") from err
    if "PixelData" not in ds:
        if not ds.preamble and "SOPClassUID" not in ds:
            raise VideoReadError(path, "not a DICOM file (no DICM preamble, no pixel data)")
        raise VideoReadError(path, "DICOM has no pixel data (not an image)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError) as err:
        raise VideoReadError(path, f"DICOM image header incomplete ({err})") from err
    if n_frames < 1:
        raise VideoReadError(path, f"NumberOfFrames is {n_frames}")
    channels = 3 if samples == 3 or photometric == "PALETTE COLOR" else 1
    check_size(path, n_frames, rows, cols, channels, max_frames)
    _check_frame_count(path, ds, n_frames)
    n_use = n_frames if max_frames is None else min(n_frames, max_frames)
    raw = _decode_dicom(path, ds, n_use)
    frames = _dicom_to_uint8(path, ds, raw, photometric)
    return Video(frames, _dicom_fps(ds), _dicom_meta(ds, salt, n_frames, photometric))


def _check_frame_count(path: Path, ds: pydicom.Dataset, n_frames: int) -> None:
    """NumberOfFrames must match what the pixel data holds (catches truncated files too)."""
    data = ds.PixelData
    syntax = ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)
    if not syntax.is_encapsulated:
        expected = pydicom.pixels.utils.get_expected_length(ds, unit="bytes")
        frame_bytes = expected // n_frames
        held = len(data) // frame_bytes if frame_bytes else 0
        if len(data) < expected or held > n_frames:
            raise VideoReadError(
                path, f"NumberOfFrames is {n_frames} but the pixel data holds {held} complete "
                f"frames ({len(data)} bytes, {frame_bytes} per frame)")
        return
    offsets = pydicom.encaps.parse_basic_offsets(data)
    n_fragments = sum(1 for _ in pydicom.encaps.generate_fragments(data))
    if offsets and len(offsets) != n_frames:
        raise VideoReadError(
            path, f"NumberOfFrames is {n_frames} but the offset table lists {len(offsets)} frames")
    if n_fragments < n_frames:
        raise VideoReadError(
            path, f"NumberOfFrames is {n_frames} but the pixel data holds only {n_fragments} "
            "compressed fragments (truncated?)")


def _decode_dicom(path: Path, ds: pydicom.Dataset, n_use: int) -> np.ndarray:
    """The first ``n_use`` frames, (n_use, H, W[, 3]); YBR_FULL(_422) converted to RGB here,
    or kept as its Y plane when every frame's chroma is neutral (gray content)."""
    syntax = ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian)
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError as err:
        raise VideoReadError(path, f"unsupported transfer syntax {syntax.name or syntax}") from err
    # Pillow's libjpeg-turbo decodes baseline JPEG (most ultrasound) faster than libjpeg.
    plugins = [""]
    if syntax == pydicom.uid.JPEGBaseline8Bit and "pillow" in decoder.available_plugins:
        plugins.insert(0, "pillow")
    for k, plugin in enumerate(plugins):
        try:
            frames = [_ybr_to_rgb_or_gray(arr) if info.get("photometric_interpretation") in (
                "YBR_FULL", "YBR_FULL_422") else arr
                for arr, info in _iter_decoded(decoder, ds, syntax, n_use, plugin)]
            break
        except Exception:  # a plugin that cannot handle this file: fall back to pydicom's choice
            if k == len(plugins) - 1:
                raise
    if any(f.ndim == 3 for f in frames) and any(f.ndim == 2 for f in frames):
        frames = [f if f.ndim == 3 else np.repeat(f[..., None], 3, axis=-1) for f in frames]
    return np.stack(frames)


def _iter_decoded(decoder, ds: pydicom.Dataset, syntax, n_use: int, plugin: str):
    """(array, info) per frame, undecoded colour space (raw=True)."""
    if syntax.is_encapsulated:
        yield from decoder.iter_array(ds, indices=range(n_use), raw=True, decoding_plugin=plugin)
    else:  # frame by frame: pydicom 3.0's iter_array miscounts native YBR_FULL_422 frames
        for i in range(n_use):
            yield decoder.as_array(ds, index=i, raw=True)


def _ybr_to_rgb_or_gray(ybr: np.ndarray) -> np.ndarray:
    """YBR_FULL (H, W, 3) → RGB (DICOM PS3.3 C.7.6.3.1.2); the Y plane alone if Cb = Cr = 128."""
    if ybr.dtype != np.uint8:
        return pydicom.pixels.convert_color_space(ybr, "YBR_FULL", "RGB")
    if (ybr[..., 1] == 128).all() and (ybr[..., 2] == 128).all():
        return np.ascontiguousarray(ybr[..., 0])
    y = ybr[..., 0].astype(np.float32)
    cb = ybr[..., 1].astype(np.float32) - 128
    cr = ybr[..., 2].astype(np.float32) - 128
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _dicom_to_uint8(path: Path, ds: pydicom.Dataset, raw: np.ndarray,
                    photometric: str) -> np.ndarray:
    """(T, H, W[, 3]) decoded values → uint8; monochrome windowed or min-max scaled."""
    if photometric == "PALETTE COLOR":
        rgb = pydicom.pixels.apply_color_lut(raw, ds)
        return rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)  # 16-bit LUT
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        gray = raw if raw.dtype == np.uint8 else _scale_monochrome(ds, raw)
        return 255 - gray if photometric == "MONOCHROME1" else gray
    # RGB; YBR_FULL(_422) converted by _decode_dicom, YBR_RCT/ICT by the JPEG 2000 decoder.
    if photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        raise VideoReadError(path, f"unsupported photometric interpretation {photometric}")
    if raw.ndim == 3 and raw.dtype == np.uint8:  # YBR with neutral chroma: gray already
        return raw
    if raw.ndim != 4 or raw.shape[-1] != 3:
        raise VideoReadError(
            path, f"{photometric} pixel data has shape {raw.shape[1:]}, not (H, W, 3)")
    if raw.dtype == np.uint8:
        return collapse_gray(raw)
    scale = 255.0 / (2 ** int(ds.get("BitsStored", 8 * raw.itemsize)) - 1)
    return (raw.astype(np.float32) * scale).round().clip(0, 255).astype(np.uint8)


def _scale_monochrome(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray:
    """Window (WindowCenter/Width after rescale) if given, else min-max over the whole video."""
    values = raw.astype(np.float32)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        values = values * slope + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        center = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = center - width / 2, center + width / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(raw.shape, dtype=np.uint8)
    return ((values - lo) * (255.0 / (hi - lo))).round().clip(0, 255).astype(np.uint8)


def _dicom_fps(ds: pydicom.Dataset) -> float | None:
    """Cine Rate (0018,0040), else 1000 / Frame Time (0018,1063) ms, else the display rate."""
    for keyword, to_fps in (("CineRate", float), ("FrameTime", lambda ms: 1000.0 / float(ms)),
                            ("RecommendedDisplayFrameRate", float)):
        value = ds.get(keyword)
        try:
            if value not in (None, "") and float(value) > 0:
                return round(to_fps(value), 3)
        except (TypeError, ValueError):
            continue
    return None


def _dicom_meta(ds: pydicom.Dataset, salt: str, n_frames: int, photometric: str) -> dict:
    """Non-identifying metadata only: identifiers hashed, no names, IDs or dates in clear."""
    boxes, formats = [], []
    for region in ds.get("SequenceOfUltrasoundRegions", []):
        try:
            boxes.append(tuple(int(region[k].value) for k in (
                "RegionLocationMinX0", "RegionLocationMinY0",
                "RegionLocationMaxX1", "RegionLocationMaxY1")))
            formats.append(int(region.get("RegionSpatialFormat", 0) or 0))
        except (KeyError, TypeError, ValueError):
            continue
    return {
        "source_format": "dicom",
        "study_uid_hash": hash_identifier(ds.get("StudyInstanceUID"), salt),
        "patient_id_hash": hash_identifier(ds.get("PatientID"), salt),
        "regions": boxes,
        "region_spatial_formats": formats,  # 1 = 2D tissue, 2 = M-mode, 3 = spectral, ...
        "photometric_interpretation": photometric,
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        "modality": str(ds.get("Modality", "")),
        "n_frames_declared": n_frames,
    }


def hash_identifier(value: object, salt: str) -> str | None:
    """Keyed pseudonym of an identifier: HMAC-SHA256 with ``salt`` as the key, 16 hex digits;
    None for a missing/blank value. The one hash of identifiers (DICOM tags, manifest ids)."""
    missing = value is None or (isinstance(value, float) and value != value)  # None or NaN
    text = "" if missing else str(value).strip()
    if not text:
        return None
    return hmac.new(salt.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
