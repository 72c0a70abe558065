"""Preprocessing as in Holste et al. 2024, and the one record of it that travels with the data.

Grayscale, the first ``max_frames`` frames (optionally resampled to ``target_fps``), everything
outside the ultrasound fan zeroed, cropped to the fan, padded to a square, resized by area
interpolation; videos slower than ``min_fps`` (Doppler, stills) are refused.

:class:`Preprocessing` is what a cache's frames went through. ``ingest`` writes it into the
cache's ``ingest_config.json``; pretraining and fine-tuning copy it unchanged into
``encoder.json`` / ``model.json`` under the key ``"preprocessing"``; :func:`preprocessing_of`
reads it back from any of them; :func:`check_compatible` is the one comparison every command
makes before it feeds a model frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from echoclr.data.fan import FanEstimate, estimate_fan, region_mask
from echoclr.data.video_types import Video, VideoReadError, to_grayscale

DEFAULT_FPS = 30.0  # Hz, when neither the file nor the manifest gives a rate (as the paper)
PREPROCESSING_VERSION = 1  # bump when preprocess() changes what it writes
TISSUE_2D = 1  # RegionSpatialFormat of a 2D tissue region (the only kind used as a mask)
CHUNK_BYTES = 32 * 1024**2  # float32 temporaries of one chunk of frames resized at once
INPUT_KEYS = ("version", "size", "target_fps")  # what a model's input frames depend on
CACHE_KEYS = (*INPUT_KEYS, "max_frames")  # ... and what a cache's files depend on


@dataclass(frozen=True)
class Preprocessing:
    """What a cache's frames went through; every model trained on them carries it unchanged."""

    size: int  # pixels: side of the square output frames
    max_frames: int  # frames kept from the start of each video (after resampling)
    min_fps: float | None  # Hz: slower videos are refused (None: none)
    target_fps: float | None  # Hz: every video resampled in time to this rate (None: kept)
    default_fps: float = DEFAULT_FPS  # Hz: the rate of a video that states none
    version: int | None = PREPROCESSING_VERSION  # of preprocess(); None: unknown (hand-made)

    @property
    def source_frames(self) -> int:
        """Frames to decode: resampling down from up to 8x the target rate still leaves
        ``max_frames``."""
        return self.max_frames * 8 if self.target_fps else self.max_frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preprocessing_of(meta: dict, source) -> Preprocessing:
    """The record in an ``ingest_config.json``, ``encoder.json`` or ``model.json`` (``meta``).

    It sits under ``meta["preprocessing"]``. The one fallback, for files written before the
    record had one shape: a sidecar whose ``"preprocessing"`` is a whole copy of the cache's
    ``ingest_config.json`` (the record nested one level deeper, the ingest settings beside it),
    or a hand-made config with ``size`` and ``max_frames`` at its top; unknown values are None.

    Raises:
        ValueError: naming ``source``, when the size or the frame count is missing.
    """
    record = meta.get("preprocessing")
    if not isinstance(record, dict):
        record = meta
    elif isinstance(record.get("preprocessing"), dict):
        record = record["preprocessing"] | {k: v for k, v in record.items() if k != "preprocessing"}
    values = {f.name: record.get(f.name) for f in dataclasses.fields(Preprocessing)}
    if values["size"] is None or values["max_frames"] is None:
        raise ValueError(f"{source}: gives no preprocessing size/max_frames, so new videos cannot "
                         "be prepared as its frames were")
    values["default_fps"] = values["default_fps"] or DEFAULT_FPS
    return Preprocessing(**values)


def check_compatible(expected: Preprocessing, found: Preprocessing, *, expected_from,
                     found_from, fix: str, keys: tuple[str, ...] = INPUT_KEYS) -> None:
    """Refuse frames prepared otherwise than ``expected`` says (an unknown version is no
    mismatch).

    Raises:
        ValueError: naming both sources, the differing settings of each, and ``fix``.
    """
    differ = [k for k in keys if getattr(expected, k) != getattr(found, k)
              and not (k == "version" and None in (expected.version, found.version))]
    if differ:
        want = {k: getattr(expected, k) for k in differ}
        have = {k: getattr(found, k) for k in differ}
        raise ValueError(f"{expected_from} expects frames prepared with {want}, but {found_from} "
                         f"has {have}; {fix}")


def replayable(prep: Preprocessing, source) -> Preprocessing:
    """``prep``, after checking that this echoclr's :func:`preprocess` is the one it records."""
    check_compatible(prep, dataclasses.replace(prep, version=PREPROCESSING_VERSION),
                     expected_from=source, found_from="this echoclr",
                     fix="new videos would not be prepared as its training videos were")
    return prep


def resample_time(frames: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """Nearest-frame resampling to ``target_fps``, so a clip's frames span the same time in every
    video whatever its acquisition rate (30–80 Hz in one archive is common)."""
    n_out = max(1, int(np.floor((len(frames) - 1) * target_fps / fps)) + 1)
    idx = np.minimum(np.round(np.arange(n_out) * fps / target_fps).astype(int), len(frames) - 1)
    return frames[idx]


def frame_rate(file_fps: float | None, manifest_fps: float | None, prep: Preprocessing, *,
               path) -> tuple[float, str]:
    """The frame-rate rule: the file's rate, else the manifest's, else ``prep.default_fps``.

    Returns:
        the rate (Hz) and where it came from ("file", "manifest" or "default").

    Raises:
        VideoReadError: slower than ``prep.min_fps`` (Doppler strips, stills).
    """
    fps_from = "file" if file_fps else "manifest" if manifest_fps else "default"
    fps = file_fps or manifest_fps or prep.default_fps
    if prep.min_fps and fps < prep.min_fps:
        raise VideoReadError(path, f"fps {fps:g} < {prep.min_fps:g}")
    return fps, fps_from


def prepare(video: Video, prep: Preprocessing, *, path,
            manifest_fps: float | None = None) -> tuple[np.ndarray, dict, str]:
    """The frame-rate rule (:func:`frame_rate`; ``video.fps`` is set to it), then
    :func:`preprocess`, for frames already decoded.

    Returns:
        uint8 (T, size, size) frames, the preprocessing info, and where the rate came from.
    """
    video.fps, fps_from = frame_rate(video.fps, manifest_fps, prep, path=path)
    frames, info = preprocess(video, size=prep.size, max_frames=prep.max_frames,
                              target_fps=prep.target_fps)
    return frames, info, fps_from


def kept_frames(n_frames: int, fps: float, prep: Preprocessing) -> np.ndarray:
    """Which of ``n_frames`` decoded frames the output's frames are (resampled to
    ``prep.target_fps``, then the first ``prep.max_frames``); a frame may repeat."""
    idx = np.arange(n_frames)
    if prep.target_fps and abs(fps - prep.target_fps) > 1e-6:
        idx = resample_time(idx, fps, prep.target_fps)
    return idx[:prep.max_frames]


def preprocess(video: Video, *, size: int, max_frames: int,
               target_fps: float | None = None) -> tuple[np.ndarray, dict]:
    """Grayscale, mask outside the fan, crop to the fan, pad to a square, area-resize.

    The mask is the fan estimated from temporal variation (see :mod:`echoclr.data.fan`),
    intersected with the DICOM 2D-tissue region box when the header's box is plausible and
    covers the fan; the box alone when the fan is degenerate (one frame, nothing moving);
    nothing is masked when neither exists.

    Args:
        video: decoded frames (T, H, W) or (T, H, W, 3) uint8.
        size: output side in pixels.
        max_frames: keep the first ``max_frames`` frames (after resampling).
        target_fps: resample in time to this rate first (needs ``video.fps``).

    Returns:
        uint8 (min(T, max_frames), size, size), and info: ``mask_method`` ("region+fan", "fan",
        "region" or "none"), ``mask_reason``, ``mask_fraction``, ``crop_box`` (x0, y0, x1, y1;
        end exclusive, original pixels), ``pad`` (top, bottom, left, right), ``original_shape``.
    """
    frames = video.frames
    if target_fps and video.fps and abs(video.fps - target_fps) > 1e-6:
        frames = resample_time(frames, video.fps, target_fps)
    out, info = reduce_video(to_grayscale(frames[:max_frames]), video.meta, size)
    return out, info | {"original_shape": list(video.frames.shape)}


def reduce_video(gray: np.ndarray, meta: dict, size: int) -> tuple[np.ndarray, dict]:
    """The fan and mask of uint8 (T, H, W) gray frames, then each frame masked, cropped, padded
    and resized, a few frames at a time: (T, size, size) and the mask info."""
    mask, info = video_mask(estimate_fan(gray), meta)
    out = np.empty((len(gray), size, size), np.uint8)
    step = chunk_frames(gray.shape[1:])
    for t in range(0, len(gray), step):
        out[t:t + step] = reduce_frames(gray[t:t + step], mask, info, size)
    return out, info


def chunk_frames(shape: tuple[int, ...]) -> int:
    """Frames of (H, W) processed at once: up to 16, fewer for large frames (CHUNK_BYTES)."""
    return max(1, min(16, CHUNK_BYTES // (4 * shape[-2] * shape[-1])))


def video_mask(fan: FanEstimate, meta: dict) -> tuple[np.ndarray, dict]:
    """The mask (region ∩ fan, else the region, else the fan, else everything) and its info:
    ``mask_method``, ``mask_reason``, ``mask_fraction``, ``crop_box``, ``pad``."""
    boxes = meta.get("regions") or []
    formats = meta.get("region_spatial_formats")
    if formats is not None and len(formats) == len(boxes):
        boxes = [b for b, f in zip(boxes, formats, strict=True) if f == TISSUE_2D]
    region = region_mask(fan.mask.shape, boxes)
    if region is None:
        mask, method, reason = (fan.mask, "fan", "") if fan.ok else (fan.mask, "none", fan.reason)
    elif not fan.ok:
        mask, method, reason = region, "region", fan.reason
    elif (region & fan.mask).mean() < 0.5 * fan.mask.mean():  # the box misses most of the fan
        mask, method, reason = fan.mask, "fan", "DICOM region box misses most of the moving fan"
    else:
        mask, method, reason = region & fan.mask, "region+fan", ""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    side = max(y1 - y0, x1 - x0)
    top, left = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    pad = (top, side - (y1 - y0) - top, left, side - (x1 - x0) - left)
    return mask, {"mask_method": method, "mask_reason": reason,
                  "mask_fraction": round(float(mask.mean()), 4), "crop_box": [x0, y0, x1, y1],
                  "pad": list(pad)}


def reduce_frames(gray: np.ndarray, mask: np.ndarray, info: dict, size: int) -> np.ndarray:
    """Mask, crop, pad and area-resize uint8 (n, H, W) gray frames as ``info`` says: (n, size,
    size); each frame independently, so any chunking gives the same frames."""
    x0, y0, x1, y1 = info["crop_box"]
    top, bottom, left, right = info["pad"]
    crop = gray[:, y0:y1, x0:x1] * mask[None, y0:y1, x0:x1]
    return resize_area(np.pad(crop, ((0, 0), (top, bottom), (left, right))), size)


def resize_area(frames: np.ndarray, size: int) -> np.ndarray:
    """Area-interpolate uint8 (T, h, w) to (T, size, size): each output pixel is the mean of the
    input area it covers (cv2.INTER_AREA when shrinking, to ±1 gray level).

    Computed per axis from prefix sums, without BLAS: matrix products would start BLAS thread
    pools that oversubscribe the cores when several ingest workers run.
    """
    out = np.empty((len(frames), size, size), np.uint8)
    step = chunk_frames(frames.shape)
    for t in range(0, len(frames), step):  # chunks bound the float32 temporaries
        x = _area_resize_last_axis(frames[t:t + step], size)  # (n, h, size)
        x = _area_resize_last_axis(x.transpose(0, 2, 1), size).transpose(0, 2, 1)
        out[t:t + step] = np.clip(np.rint(x), 0, 255)
    return out


def _area_resize_last_axis(x: np.ndarray, n_out: int) -> np.ndarray:
    """Mean over each of n_out equal intervals of the last axis, as the difference of the
    piecewise-linear integral (prefix sums) at the interval edges."""
    n_in = x.shape[-1]
    integral = np.zeros((*x.shape[:-1], n_in + 1), np.float32)
    np.cumsum(x, axis=-1, dtype=np.float32, out=integral[..., 1:])  # exact: sums < 2**24
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.minimum(edges.astype(int), n_in - 1)
    frac = (edges - lo).astype(np.float32)
    at_lo = integral[..., lo]
    at_edges = at_lo + frac * (integral[..., lo + 1] - at_lo)
    return np.diff(at_edges, axis=-1) * np.float32(n_out / n_in)
