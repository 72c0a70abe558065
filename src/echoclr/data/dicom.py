"""DICOM cines as a :class:`~echoclr.data.video_types.FrameSource`: the header read without
pixels (:mod:`echoclr.data.dicom_header`), checked against the pixel data's length, then frames
decoded from the file one at a time in any transfer syntax pydicom's plugins handle and
converted to uint8 grey/RGB; frame rate from Cine Rate / Frame Time; non-identifying metadata
(identifiers only as keyed hashes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Container, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pydicom.encaps
import pydicom.pixels

from echoclr.data.dicom_header import DicomHeader, not_an_image, read_header, us_regions
from echoclr.data.video_types import VideoReadError, check_size, collapse_gray

class DicomSource:
    """An opened DICOM cine (header checked); :meth:`frames` decodes from the file."""

    def __init__(self, path: Path, header: DicomHeader, salt: str):
        ds = self.ds = header.ds
        self.path, self.header = path, header
        try:
            self.height, self.width = int(ds.Rows), int(ds.Columns)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            self.n_frames = int(ds.get("NumberOfFrames", 1) or 1)
            self.photometric = str(ds.PhotometricInterpretation).strip().upper()
        except (AttributeError, TypeError, ValueError) as err:
            raise VideoReadError(path, f"DICOM image header incomplete ({err})") from err
        if self.n_frames < 1:
            raise VideoReadError(path, f"NumberOfFrames is {self.n_frames}")
        self.channels = 3 if samples == 3 or self.photometric == "PALETTE COLOR" else 1
        self.fps = dicom_fps(ds)
        self.meta = _dicom_meta(ds, salt, self.n_frames, self.photometric)
        self._range: tuple[float, float] | None = None

    def frames(self, stop: int | None, keep: Container[int] | None = None
               ) -> Iterator[tuple[int, np.ndarray]]:
        """(index, uint8 (H, W) or (H, W, 3)) per frame before ``stop`` in ``keep``."""
        n_use = self.n_frames if stop is None else min(self.n_frames, stop)
        indices = [i for i in range(n_use) if keep is None or i in keep]
        monochrome = self.photometric in ("MONOCHROME1", "MONOCHROME2")
        if monochrome and self._range is None and int(self.ds.get("BitsAllocated", 8)) > 8 and \
                (self.ds.get("WindowCenter") is None or self.ds.get("WindowWidth") is None):
            lo, hi = np.inf, -np.inf
            for _, raw in self._raw(range(n_use)):  # one frame at a time: a pass of its own
                values = _rescaled(self.ds, raw)
                lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
            self._range = (lo, hi)
        for i, raw in self._raw(indices):
            yield i, _dicom_to_uint8(self.path, self.ds, raw, self.photometric, self._range)

    def _raw(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        """Decoded values per frame; YBR_FULL(_422) as RGB, or its Y plane when the chroma is
        neutral (gray content)."""
        syntax = self.header.syntax
        try:
            decoder = pydicom.pixels.get_decoder(syntax)
        except NotImplementedError as err:
            raise VideoReadError(self.path, f"unsupported transfer syntax "
                                 f"{syntax.name or syntax}") from err
        # Pillow's libjpeg-turbo decodes baseline JPEG (most ultrasound) faster than libjpeg.
        plugin = "pillow" if syntax == pydicom.uid.JPEGBaseline8Bit and \
            "pillow" in decoder.available_plugins else ""
        opts = pydicom.pixels.as_pixel_options(self.ds, transfer_syntax_uid=syntax,
                                               pixel_keyword=self.header.pixel_keyword)
        if self.header.pixel_vr:
            opts["pixel_vr"] = self.header.pixel_vr
        with open(self.path, "rb") as f:
            for i in indices:
                f.seek(self.header.pixel_offset)
                try:
                    arr, info = decoder.as_array(f, index=i, raw=True, decoding_plugin=plugin,
                                                 **opts)
                except Exception:
                    if not plugin:
                        raise
                    f.seek(self.header.pixel_offset)  # a plugin that cannot: pydicom's choice
                    arr, info = decoder.as_array(f, index=i, raw=True, **opts)
                if info.get("photometric_interpretation") in ("YBR_FULL", "YBR_FULL_422"):
                    arr = _ybr_to_rgb_or_gray(arr)
                yield i, arr


def open_dicom(path: Path, max_frames: int | None, salt: str, *, held: bool = False
               ) -> DicomSource:
    """The header of a DICOM cine, checked (sizes, frame count against the pixel data).

    Raises:
        VideoReadError: unreadable, no pixel data, inconsistent or too large.
    """
    try:
        header = read_header(path)
    except Exception as err:
        raise VideoReadError(path, f"unreadable DICOM ({type(err).__name__}: {err})") from err
    if reason := not_an_image(header):
        raise VideoReadError(path, reason)
    source = DicomSource(path, header, salt)
    check_size(path, source.n_frames, source.height, source.width, source.channels, max_frames,
               held=held)
    _check_frame_count(path, header, source.n_frames)
    return source


def _check_frame_count(path: Path, header: DicomHeader, n_frames: int) -> None:
    """NumberOfFrames must match what the pixel data holds (catches truncated files too); when
    the length fits another BitsAllocated or SamplesPerPixel instead, name that element."""
    ds, syntax = header.ds, header.syntax
    size = path.stat().st_size
    if not syntax.is_encapsulated:
        expected = pydicom.pixels.utils.get_expected_length(ds, unit="bytes")
        length = min(header.pixel_length, size - header.pixel_offset)
        frame_bytes = expected // n_frames
        held = length // frame_bytes if frame_bytes else 0
        if length < expected or held > n_frames:
            raise VideoReadError(path, _length_mismatch(ds, n_frames, length, expected, held))
        return
    with open(path, "rb") as f:
        f.seek(header.pixel_offset)
        offsets = pydicom.encaps.parse_basic_offsets(f)
        f.seek(header.pixel_offset)
        try:
            n_fragments = pydicom.encaps.parse_fragments(f)[0]
        except (ValueError, EOFError, OSError):
            n_fragments = 0
    if offsets and len(offsets) != n_frames:
        raise VideoReadError(
            path, f"NumberOfFrames is {n_frames} but the offset table lists {len(offsets)} frames")
    if n_fragments < n_frames:
        raise VideoReadError(
            path, f"NumberOfFrames is {n_frames} but the pixel data holds only {n_fragments} "
            "compressed fragments (truncated?)")


def _length_mismatch(ds: pydicom.Dataset, n_frames: int, length: int, expected: int,
                     held: int) -> str:
    """The sentence for native pixel data whose length disagrees with the header."""
    bits = int(ds.get("BitsAllocated", 8) or 8)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    for name, have, other in (("BitsAllocated", bits, 8 if bits == 16 else 16),
                              ("SamplesPerPixel", samples, 1 if samples == 3 else 3)):
        if length == expected * other // have:
            return (f"{name} is {have} but the pixel data holds {length} bytes, what {name} "
                    f"{other} needs for the {n_frames} declared frames of {ds.Columns}x{ds.Rows} "
                    f"(the header's {name} is wrong)")
    frame_bytes = expected // n_frames
    return (f"NumberOfFrames is {n_frames} but the pixel data holds {held} complete frames "
            f"({length} bytes, {frame_bytes} per frame)")


YBR_ROWS = 128  # rows of a YBR frame converted to RGB at once


def _ybr_to_rgb_or_gray(ybr: np.ndarray) -> np.ndarray:
    """YBR_FULL (H, W, 3) → RGB (DICOM PS3.3 C.7.6.3.1.2); the Y plane alone if Cb = Cr = 128."""
    if ybr.dtype != np.uint8:
        return pydicom.pixels.convert_color_space(ybr, "YBR_FULL", "RGB")
    if (ybr[..., 1] == 128).all() and (ybr[..., 2] == 128).all():
        return np.ascontiguousarray(ybr[..., 0])
    out = np.empty(ybr.shape, np.uint8)
    for top in range(0, ybr.shape[0], YBR_ROWS):  # strips: float temporaries of a few MiB,
        block = ybr[top:top + YBR_ROWS]  # not ~48 bytes per pixel of a 4096 x 4096 frame
        y = block[..., 0].astype(np.float32)
        cb = block[..., 1].astype(np.float32) - 128
        cr = block[..., 2].astype(np.float32) - 128
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb],
                       axis=-1)
        out[top:top + YBR_ROWS] = np.clip(np.rint(rgb), 0, 255)
    return out


def _dicom_to_uint8(path: Path, ds: pydicom.Dataset, raw: np.ndarray, photometric: str,
                    value_range: tuple[float, float] | None) -> np.ndarray:
    """One frame's decoded values → uint8 (H, W) or (H, W, 3); monochrome windowed, or scaled
    over ``value_range`` (the whole video's min and max after rescale)."""
    if photometric == "PALETTE COLOR":
        rgb = pydicom.pixels.apply_color_lut(raw, ds)
        return rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)  # 16-bit LUT
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        gray = raw if raw.dtype == np.uint8 else _scale_monochrome(ds, raw, value_range)
        return 255 - gray if photometric == "MONOCHROME1" else gray
    # RGB; YBR_FULL(_422) converted by _raw, YBR_RCT/ICT by the JPEG 2000 decoder.
    if photometric not in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        raise VideoReadError(path, f"unsupported photometric interpretation {photometric}")
    if raw.ndim == 2 and raw.dtype == np.uint8:  # YBR with neutral chroma: gray already
        return raw
    if raw.ndim != 3 or raw.shape[-1] != 3:
        raise VideoReadError(
            path, f"{photometric} pixel data has shape {raw.shape}, not (H, W, 3)")
    if raw.dtype == np.uint8:
        return collapse_gray(raw[None])[0]
    scale = 255.0 / (2 ** int(ds.get("BitsStored", 8 * raw.itemsize)) - 1)
    return (raw.astype(np.float32) * scale).round().clip(0, 255).astype(np.uint8)


def _rescaled(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray:
    values = raw.astype(np.float32)
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        values = values * slope + float(ds.get("RescaleIntercept", 0) or 0)
    return values


def _scale_monochrome(ds: pydicom.Dataset, raw: np.ndarray,
                      value_range: tuple[float, float] | None) -> np.ndarray:
    """Window (WindowCenter/Width after rescale) if given, else min-max over the whole video."""
    values = _rescaled(ds, raw)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        center = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = center - width / 2, center + width / 2
    else:
        lo, hi = value_range
    if hi <= lo:
        return np.zeros(raw.shape, dtype=np.uint8)
    return ((values - lo) * (255.0 / (hi - lo))).round().clip(0, 255).astype(np.uint8)


def dicom_fps(ds: pydicom.Dataset) -> float | None:
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
        "us_regions": us_regions(ds),  # "2d", "2d+colour", "2d+doppler", ... ("" unknown)
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
