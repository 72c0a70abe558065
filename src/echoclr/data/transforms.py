"""Clip sampling, the paper's augmentations and frame permutations, on batched tensors.

Augmentations (Holste et al. 2024): zero-pad 8 px + random crop back to size, horizontal flip
(p=0.5), rotation by an integer angle in [-10, 10] degrees (p=0.5); the same parameters for
every frame of a clip. They are fused into one affine ``grid_sample`` per batch, so they run on
whatever device the batch is on instead of frame by frame in scipy.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

MAX_REORDER_CLIP_LEN = 5  # frames: 5! = 120 ordering classes (8! would be 40,320)


def clip_indices(n_frames: int, clip_len: int, period: int, start: int) -> np.ndarray:
    """Frame indices of one clip; videos too short are padded by repeating their last frame."""
    idx = start + period * np.arange(clip_len)
    return np.minimum(idx, n_frames - 1)


def random_start(n_frames: int, clip_len: int, period: int, rng: np.random.Generator) -> int:
    """A uniformly drawn start frame such that the clip fits when the video is long enough."""
    span = (clip_len - 1) * period + 1
    return int(rng.integers(0, max(1, n_frames - span + 1)))


def evenly_spaced_starts(n_frames: int, clip_len: int, period: int, k: int) -> list[int]:
    """Start frames of ``k`` evenly spaced clips covering the video (evaluation protocol)."""
    span = (clip_len - 1) * period + 1
    last = max(0, n_frames - span)
    return [int(round(s)) for s in np.linspace(0, last, k)]


def sample_clip(video: np.ndarray, clip_len: int, period: int, start: int) -> np.ndarray:
    """Read one clip from a (possibly memory-mapped) video.

    Args:
        video: uint8 (T, H, W).
    Returns:
        uint8 (clip_len, H, W), a copy (only the needed frames are read from disk).
    """
    return np.ascontiguousarray(video[clip_indices(len(video), clip_len, period, start)])


def evenly_spaced_clips(video: np.ndarray, clip_len: int, period: int, k: int) -> np.ndarray:
    """Read ``k`` evenly spaced clips of a (possibly memory-mapped) video (evaluation protocol).

    Args:
        video: uint8 (T, H, W).
    Returns:
        uint8 (k, clip_len, H, W), a copy.
    """
    starts = evenly_spaced_starts(len(video), clip_len, period, k)
    idx = np.stack([clip_indices(len(video), clip_len, period, s) for s in starts])
    return np.ascontiguousarray(video[idx])


def minmax_scale(clips: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale each clip to [0, 1] over all its pixels; a constant clip becomes all zeros.

    Args:
        clips: (B, ...) any dtype.
    Returns:
        float32 (B, ...).
    """
    x = clips.float()
    flat = x.flatten(1)
    lo = flat.amin(dim=1).view(-1, *[1] * (x.dim() - 1))
    hi = flat.amax(dim=1).view(-1, *[1] * (x.dim() - 1))
    return (x - lo) / (hi - lo).clamp_min(eps)


def augment_clips(
    clips: torch.Tensor, *, generator: torch.Generator | None = None, pad: int = 8,
    max_degrees: int = 10, p_flip: float = 0.5, p_rotate: float = 0.5,
) -> torch.Tensor:
    """The paper's augmentation, one random draw per clip, shared by its frames.

    Args:
        clips: float (B, T, H, W).
        generator: a CPU generator for repeatable draws.
    Returns:
        float (B, T, H, W): translated by an integer in [-pad, pad] (zero fill, as pad + crop),
        flipped, and rotated by an integer angle, with bilinear resampling.
    """
    b, t, h, w = clips.shape
    g = dict(generator=generator)
    shift = torch.randint(-pad, pad + 1, (b, 2), **g).float()
    flip = torch.rand(b, **g) < p_flip
    angle = torch.randint(-max_degrees, max_degrees + 1, (b,), **g).float()
    angle = torch.where(torch.rand(b, **g) < p_rotate, angle, torch.zeros_like(angle))
    rad = angle * math.pi / 180
    cos, sin = torch.cos(rad), torch.sin(rad)
    sx = torch.where(flip, -1.0, 1.0)
    # affine_grid maps output coords to input coords in [-1, 1] units.
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = -shift[:, 0] * 2 / w
    theta[:, 1, 2] = -shift[:, 1] * 2 / h
    theta = theta.to(clips.device, clips.dtype)
    grid = F.affine_grid(theta, [b, t, h, w], align_corners=False)
    return F.grid_sample(clips, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@lru_cache(maxsize=8)
def permutations(clip_len: int) -> torch.Tensor:
    """All orderings of ``clip_len`` frames in lexicographic order: long (clip_len!, clip_len).

    Index 0 is the identity. Limited to clip_len <= :data:`MAX_REORDER_CLIP_LEN` (120 classes).
    """
    if not 1 <= clip_len <= MAX_REORDER_CLIP_LEN:
        raise ValueError(f"frame reordering supports clip_len 1..{MAX_REORDER_CLIP_LEN}, "
                         f"got {clip_len}")
    return torch.tensor(list(itertools.permutations(range(clip_len))), dtype=torch.long)


def permutation_index(order: list[int] | tuple[int, ...]) -> int:
    """The class index of an ordering (inverse of :func:`permutations`)."""
    table = permutations(len(order)).tolist()
    return table.index(list(order))


def permute_frames(clips: torch.Tensor, perm_idx: torch.Tensor) -> torch.Tensor:
    """Reorder each clip's frames by its permutation class.

    Args:
        clips: (B, T, H, W).
        perm_idx: long (B,) in [0, T!).
    Returns:
        (B, T, H, W) with ``out[b, i] = clips[b, perms[perm_idx[b], i]]``.
    """
    order = permutations(clips.shape[1]).to(clips.device)[perm_idx]  # (B, T)
    return torch.gather(clips, 1, order[:, :, None, None].expand_as(clips))


def to_model_input(clips: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """(B, T, H, W) gray → (B, C, T, H, W) in channels_last_3d memory (fast conv3d on CPU/GPU)."""
    x = clips.unsqueeze(1).expand(-1, channels, -1, -1, -1)
    return x.contiguous(memory_format=torch.channels_last_3d)
