"""The ultrasound fan (imaging sector) of a video, so overlays outside it can be masked.

As in Holste et al. 2024: pixels that change over time → largest connected component → convex
hull → filled mask. Temporal variation (not brightness) is what excludes burned-in text, ECG
labels and scale bars: they are static. DICOM ultrasound regions give a second, header-based mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from echoclr.data.video_types import to_grayscale

MAX_STD_FRAMES = 64  # frames sampled (evenly) to measure temporal variation
MIN_STD = 0.5  # gray levels: below this a pixel is static (lossless or deterministic codecs: 0)
REL_STD = 0.02  # ... or this fraction of the 99th percentile of nonzero std (noisy codecs)
MIN_FAN_FRACTION = 0.02  # a moving component smaller than this share of the image is no fan
MIN_REGION_FRACTION = 0.05  # a DICOM region box smaller than this share is implausible


@dataclass(frozen=True)
class FanEstimate:
    """A fan mask, bool (H, W); ``ok`` False when it fell back to all-True, with the reason."""

    mask: np.ndarray
    ok: bool
    reason: str = ""


def fan_mask(frames: np.ndarray) -> np.ndarray:
    """Bool (H, W) mask of the ultrasound fan of uint8 frames (T, H, W) (or RGB (T, H, W, 3)).

    Degenerate input (one frame, nothing moving) gives an all-True mask; use
    :func:`estimate_fan` to learn whether and why that happened.
    """
    return estimate_fan(frames).mask


def estimate_fan(frames: np.ndarray) -> FanEstimate:
    """Fan mask from temporal variation: std over time → largest component → convex hull.

    Args:
        frames: uint8 (T, H, W) or (T, H, W, 3).

    Returns:
        :class:`FanEstimate`; its mask is all-True (``ok`` False) for a single frame, a still
        or blank video, or when no moving region covers ``MIN_FAN_FRACTION`` of the image.
    """
    frames = to_grayscale(frames)
    if len(frames) < 2:
        return _fallback(frames.shape[1:], "single frame: no motion to locate the fan")
    return fan_from_std(temporal_std(frames))


def fan_from_std(std: np.ndarray) -> FanEstimate:
    """The fan from per-pixel temporal std (H, W) of two or more frames (see estimate_fan)."""
    shape = std.shape
    if not std.any():
        return _fallback(shape, "no pixel changes over time (still or blank video)")
    moving = std > max(MIN_STD, REL_STD * float(np.percentile(std[std > 0], 99)))
    # Opening cuts thin bridges (moving ECG traces, codec noise at overlay edges) off the fan.
    width = 2 * max(1, round(min(shape) / 100)) + 1  # 3 px at 112, 11 px at 480
    moving = open_square(moving, width)
    labels, n = ndimage.label(moving)
    if n == 0:
        return _fallback(shape, "no moving region found")
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (1 + int(np.argmax(sizes)))
    if sizes.max() < MIN_FAN_FRACTION * largest.size:
        share = sizes.max() / largest.size
        return _fallback(shape, f"largest moving region covers only {share:.1%} of the image")
    mask = convex_hull_mask(largest)
    if mask is None:
        return _fallback(shape, "moving region is degenerate (collinear)")
    return FanEstimate(mask, True)


def open_square(mask: np.ndarray, width: int) -> np.ndarray:
    """Morphological opening of a bool mask by a width x width square (separable min/max)."""
    eroded = ndimage.minimum_filter(mask.view(np.uint8), size=width, mode="nearest")
    return ndimage.maximum_filter(eroded, size=width, mode="nearest").astype(bool)


def std_positions(n_frames: int) -> np.ndarray:
    """The at most MAX_STD_FRAMES evenly spaced frames (of ``n_frames``) the std is taken over."""
    n = min(n_frames, MAX_STD_FRAMES)
    return np.unique(np.linspace(0, n_frames - 1, n).round().astype(int))


class TemporalStd:
    """Per-pixel std over time, accumulated one frame at a time (no (T, H, W) float copy); the
    sums are of integers, so exact in float64 whatever the order."""

    def __init__(self, shape: tuple[int, int]):
        self.s1 = np.zeros(shape, np.float64)
        self.s2 = np.zeros(shape, np.float64)
        self.n = 0

    def add(self, frame: np.ndarray, times: int = 1) -> None:
        f = frame.astype(np.float64)
        self.s1 += f * times if times > 1 else f
        f *= f
        self.s2 += f * times if times > 1 else f
        self.n += times

    def std(self) -> np.ndarray:
        mean = self.s1 / self.n
        return np.sqrt(np.maximum(self.s2 / self.n - mean * mean, 0.0)).astype(np.float32)


def temporal_std(frames: np.ndarray) -> np.ndarray:
    """Per-pixel std over time of uint8 (T, H, W), from at most MAX_STD_FRAMES spaced frames."""
    acc = TemporalStd(frames.shape[1:])
    for i in std_positions(len(frames)):
        acc.add(frames[i])
    return acc.std()


def convex_hull_mask(component: np.ndarray) -> np.ndarray | None:
    """Filled convex hull (bool, same shape) of a bool (H, W) component; None if degenerate."""
    edge = component & ~ndimage.binary_erosion(component)  # the hull only needs the outline
    ys, xs = np.nonzero(edge)
    try:
        hull = ConvexHull(np.column_stack([xs, ys]).astype(np.float64))
    except (QhullError, ValueError):
        return None
    h, w = component.shape
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    mask = np.ones((h, w), bool)
    for nx, ny, offset in hull.equations:  # unit outward normals: inside is <= 0
        mask &= nx * x + ny * y + offset <= 0.5  # half a pixel keeps the outline pixels
    return mask


def region_mask(shape: tuple[int, ...],
                regions: list[tuple[int, int, int, int]] | None) -> np.ndarray | None:
    """Union of DICOM ultrasound region boxes as a bool (H, W) mask, or None if implausible.

    Args:
        shape: (H, W) (or (T, H, W[, 3]), whose H and W are used).
        regions: boxes (x0, y0, x1, y1), inclusive pixel coordinates, as in
            SequenceOfUltrasoundRegions (RegionLocationMinX0 ... MaxY1).

    Returns:
        The mask, or None when there is no box, a box lies (partly) outside the image or is
        empty, or all boxes together cover less than MIN_REGION_FRACTION of the image: such
        headers describe another resolution (e.g. pydicom's ``examples_ybr_color.dcm``).
    """
    h, w = (shape[1], shape[2]) if len(shape) >= 3 else (shape[0], shape[1])
    if not regions:
        return None
    mask = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in regions:
        if not (0 <= x0 < x1 < w and 0 <= y0 < y1 < h):
            return None
        mask[y0:y1 + 1, x0:x1 + 1] = True
    if mask.mean() < MIN_REGION_FRACTION:
        return None
    return mask


def _fallback(shape: tuple[int, int], reason: str) -> FanEstimate:
    return FanEstimate(np.ones(shape, bool), False, reason)
