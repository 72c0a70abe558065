"""Decode and preprocess one video in bounded memory: frames are converted to gray as they are
decoded, only the frames kept (``max_frames``, after resampling) are read, and a video whose
full-resolution gray frames would pass ``GRAY_BUDGET`` is decoded twice instead of held: once
for the fan (the temporal std over at most 64 frames, accumulated frame by frame), once to
mask, crop and resize each frame. Both ways give the same frames as :func:`preprocess`.

Peak memory is about ``min(T·H·W, GRAY_BUDGET)`` bytes of gray frames + ≈ 40·H·W bytes of fan
estimation + ≈ 3·CHUNK_BYTES (96 MiB) of float temporaries while a chunk of frames is resized +
the output, plus what the decoder holds (one frame; the compressed pixel data of a DICOM is read
from the file frame by frame; YBR frames are converted to RGB in strips). Measured by
``benchmarks/bench_ingest_memory.py``: one 2048 x 2048 x 80 JPEG DICOM (53 MB) ingests within
362 MiB over the interpreter's own (held path, 32 frames) and 234 MiB (two passes, 80 frames),
against bounds of 384 and 512 MiB.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from echoclr.data.fan import TemporalStd, fan_from_std, std_positions
from echoclr.data.preprocess import (
    Preprocessing, frame_rate, kept_frames, reduce_frames, reduce_video, video_mask,
)
from echoclr.data.video_types import FrameSource, VideoReadError, to_grayscale

GRAY_BUDGET = 256 * 1024**2  # bytes of full-resolution gray frames held at once
STILL = "single-frame still, not a cine"


def prepare_source(source: FrameSource, prep: Preprocessing, *, path,
                   manifest_fps: float | None = None) -> tuple[np.ndarray, dict, float, str]:
    """The frame-rate rule, then preprocessing of an opened video, as ingest stores it and
    predict and saliency score it; a one-frame video is refused (no motion: no fan to mask).

    Returns:
        uint8 (T, size, size) frames, the preprocessing info, the frame rate used (Hz) and
        where it came from ("file", "manifest" or "default").

    Raises:
        VideoReadError: unreadable, a single frame, or slower than ``prep.min_fps``.
    """
    fps, fps_from = frame_rate(source.fps, manifest_fps, prep, path=path)
    n = source.n_frames
    if n == 1:
        raise VideoReadError(path, STILL)
    stop, frame_bytes = prep.source_frames, source.height * source.width
    if n is None and stop * frame_bytes <= GRAY_BUDGET:
        frames, info = _decoded_whole(source, prep, fps, path)
        return frames, info, fps, fps_from
    if n is None:
        n = sum(1 for _ in source.frames(stop, keep=()))  # a counting pass, converting nothing
    kept = kept_frames(min(n, stop), fps, prep)
    if len(np.unique(kept)) * frame_bytes <= GRAY_BUDGET or len(kept) < 2:
        frames, info = _held(source, prep, kept, min(n, stop))
    else:
        frames, info = _two_pass(source, prep, kept, min(n, stop))
    return frames, info, fps, fps_from


def _decoded_whole(source: FrameSource, prep: Preprocessing, fps: float, path):
    """A video that does not say how long it is: every frame up to ``prep.source_frames``."""
    gray, colour = [], False
    for _, frame in source.frames(prep.source_frames):
        colour |= frame.ndim == 3
        gray.append(to_grayscale(frame[None])[0])
    if len(gray) == 1:
        raise VideoReadError(path, STILL)
    shape = [len(gray), source.height, source.width] + ([3] if colour else [])
    kept = np.stack([gray[i] for i in kept_frames(len(gray), fps, prep)])
    del gray
    return _reduce(kept, source.meta, prep.size, shape)


def _held(source: FrameSource, prep: Preprocessing, kept: np.ndarray, n_use: int):
    """Hold the kept frames, at full resolution in gray, then preprocess them."""
    unique, inverse = np.unique(kept, return_inverse=True)
    gray = np.empty((len(unique), source.height, source.width), np.uint8)
    slot = {int(i): k for k, i in enumerate(unique)}
    colour = False
    for i, frame in source.frames(int(unique[-1]) + 1, keep=slot):
        colour |= frame.ndim == 3
        gray[slot[i]] = to_grayscale(frame[None])[0]
    if len(unique) < len(kept):  # upsampled in time: frames repeat
        gray = gray[inverse]
    shape = [n_use, source.height, source.width] + ([3] if colour else [])
    return _reduce(gray, source.meta, prep.size, shape)


def _reduce(gray: np.ndarray, meta: dict, size: int, shape: list[int]):
    out, info = reduce_video(gray, meta, size)
    return out, info | {"original_shape": shape}


def _two_pass(source: FrameSource, prep: Preprocessing, kept: np.ndarray, n_use: int):
    """Decode twice: the fan from the std frames, then each kept frame reduced as it comes."""
    std_count = Counter(kept[std_positions(len(kept))].tolist())  # source frame → times
    acc, colour = TemporalStd((source.height, source.width)), False
    for i, frame in source.frames(max(std_count) + 1, keep=std_count):
        colour |= frame.ndim == 3
        acc.add(to_grayscale(frame[None])[0], std_count[i])
    mask, info = video_mask(fan_from_std(acc.std()), source.meta)
    positions: dict[int, list[int]] = {}
    for p, i in enumerate(kept.tolist()):
        positions.setdefault(i, []).append(p)
    out = np.empty((len(kept), prep.size, prep.size), np.uint8)
    for i, frame in source.frames(int(kept.max()) + 1, keep=positions):
        colour |= frame.ndim == 3
        small = reduce_frames(to_grayscale(frame[None]), mask, info, prep.size)[0]
        for p in positions[i]:
            out[p] = small
    shape = [n_use, source.height, source.width] + ([3] if colour else [])
    return out, info | {"original_shape": shape}
