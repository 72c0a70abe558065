"""Decoded video frames and what every reader shares: the :class:`Video` record, the
:class:`FrameSource` a reader opens (header facts, frames decoded one at a time), the one error
type :class:`VideoReadError`, the size limits checked before decoding, and grayscale conversion.

Both readers (:mod:`echoclr.data.video` for AVI/MP4, :mod:`echoclr.data.dicom` for DICOM) build
on this module, so neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

MAX_SIDE = 4096  # pixels: larger frames are not echo cine loops
MAX_FRAMES = 10_000  # frames: about 5 min at 30 fps, far beyond any cine loop
MAX_DECODED_BYTES = 2 * 1024**3  # bytes of uint8 frames one read may produce

GRAY_WEIGHTS = (77, 150, 29)  # ITU-R BT.601 luma in 1/256 steps (sum 256)


class VideoReadError(Exception):
    """A video that cannot be read; ``str`` is ``"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Video:
    """Decoded frames: uint8 (T, H, W) grayscale or (T, H, W, 3) RGB; ``fps`` None if unknown."""

    frames: np.ndarray
    fps: float | None
    meta: dict = field(default_factory=dict)


class FrameSource(Protocol):
    """An opened video: what its header says, and its frames decoded one at a time."""

    n_frames: int | None  # declared frame count (None: the container does not say)
    height: int
    width: int
    fps: float | None  # Hz, from the file (None: it states none)
    meta: dict  # non-identifying metadata, as in Video.meta

    def frames(self, stop: int | None, keep: Container[int] | None = None
               ) -> Iterator[tuple[int, np.ndarray]]:
        """(index, uint8 (H, W) or (H, W, 3) frame) for the frames before ``stop`` (None: all)
        whose index is in ``keep`` (None: every one), in order; each pass decodes from the
        start of the file and holds one frame at a time."""


def stack_frames(frames: list[np.ndarray]) -> np.ndarray:
    """(T, H, W) when every frame is gray, else (T, H, W, 3) with gray frames repeated."""
    if any(f.ndim == 3 for f in frames) and any(f.ndim == 2 for f in frames):
        frames = [f if f.ndim == 3 else np.repeat(f[..., None], 3, axis=-1) for f in frames]
    return np.stack(frames)


def check_size(path: str | os.PathLike, n_frames: int, height: int, width: int, channels: int,
               max_frames: int | None, *, held: bool) -> None:
    """Refuse absurd dimensions from a header, before decoding (limits: module constants); a
    long video is fine when only ``max_frames`` of it are read. ``MAX_DECODED_BYTES`` binds only
    a ``held`` read (all frames in memory at once); a read reduced frame by frame
    (:mod:`echoclr.data.reduce`) holds a bounded part of them, whatever the video's size."""
    if height < 1 or width < 1:
        raise VideoReadError(path, f"invalid frame size {width}x{height}")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise VideoReadError(
            path, f"frame size {width}x{height} exceeds the {MAX_SIDE}x{MAX_SIDE} limit")
    n_decoded = n_frames if max_frames is None else min(n_frames, max_frames)
    if n_decoded > MAX_FRAMES:
        raise VideoReadError(path, f"{n_decoded} frames exceed the {MAX_FRAMES}-frame limit")
    n_bytes = n_decoded * height * width * channels
    if held and n_bytes > MAX_DECODED_BYTES:
        raise VideoReadError(
            path, f"{n_decoded} frames of {width}x{height}x{channels} would decode to "
            f"{n_bytes / 1024**3:.1f} GiB, over the {MAX_DECODED_BYTES / 1024**3:.0f} GiB limit")


def to_grayscale(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W) from (T, H, W) or (T, H, W, 3) RGB (BT.601 luma, integer arithmetic)."""
    if frames.ndim == 3:
        return np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W) or (T, H, W, 3) frames, got shape {frames.shape}")
    out = np.empty(frames.shape[:3], dtype=np.uint8)
    r, g, b = GRAY_WEIGHTS
    for t in range(0, len(frames), 16):  # chunks keep the uint16 temporaries small
        chunk = frames[t:t + 16].astype(np.uint16)
        luma = chunk[..., 0] * r + chunk[..., 1] * g + chunk[..., 2] * b + 128
        out[t:t + 16] = luma >> 8
    return out


def collapse_gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) when the three channels of (T, H, W, 3) are identical, else the input."""
    if frames.ndim == 4 and np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(
            frames[..., 1], frames[..., 2]):
        return np.ascontiguousarray(frames[..., 0])
    return frames
