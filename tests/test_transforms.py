"""Clip sampling, augmentation, permutations and scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echoclr.data.transforms import (
    augment_clips, clip_indices, evenly_spaced_clips, evenly_spaced_starts,
    minmax_scale, permutation_index, permutations, permute_frames, random_start, sample_clip,
    to_model_input,
)


def test_clip_indices_pad_short_videos_with_last_frame():
    assert clip_indices(3, 5, 1, 0).tolist() == [0, 1, 2, 2, 2]
    assert clip_indices(20, 4, 3, 2).tolist() == [2, 5, 8, 11]


def test_random_start_keeps_clip_inside_video():
    rng = np.random.default_rng(0)
    starts = {random_start(20, 4, 3, rng) for _ in range(500)}
    assert min(starts) == 0 and max(starts) == 20 - 10  # span = 3 * 3 + 1
    assert random_start(2, 16, 1, rng) == 0


def test_evenly_spaced_clips_read_the_evenly_spaced_starts():
    video = np.arange(30 * 4 * 5, dtype=np.uint8).reshape(30, 4, 5)
    clips = evenly_spaced_clips(video, 4, 2, 3)
    assert clips.shape == (3, 4, 4, 5) and clips.flags["C_CONTIGUOUS"]
    for clip, start in zip(clips, evenly_spaced_starts(30, 4, 2, 3)):
        np.testing.assert_array_equal(clip, np.stack([video[start + 2 * i] for i in range(4)]))
    short = evenly_spaced_clips(video[:3], 4, 1, 2)  # padded with the last frame
    np.testing.assert_array_equal(short[0], video[[0, 1, 2, 2]])


def test_evenly_spaced_starts_cover_video():
    assert evenly_spaced_starts(100, 16, 1, 4) == [0, 28, 56, 84]
    assert evenly_spaced_starts(5, 16, 1, 4) == [0, 0, 0, 0]


def test_sample_clip_reads_the_right_frames():
    video = np.arange(10)[:, None, None].repeat(2, 1).repeat(2, 2).astype(np.uint8)
    assert sample_clip(video, 3, 2, 1)[:, 0, 0].tolist() == [1, 3, 5]


def test_minmax_scale_survives_constant_clip():
    clips = torch.stack([torch.full((2, 4, 4), 7, dtype=torch.uint8),
                         torch.arange(32, dtype=torch.uint8).view(2, 4, 4)])
    out = minmax_scale(clips)
    assert torch.isfinite(out).all()
    assert out[0].abs().max() == 0
    assert out[1].min() == 0 and out[1].max() == 1


def test_permutations_and_inverse():
    perms = permutations(4)
    assert perms.shape == (24, 4) and perms[0].tolist() == [0, 1, 2, 3]
    assert len({tuple(p) for p in perms.tolist()}) == 24
    for i in (0, 5, 23):
        assert permutation_index(perms[i].tolist()) == i
    with pytest.raises(ValueError):
        permutations(6)


def test_permute_frames_applies_each_clips_ordering():
    clips = torch.arange(4).float().view(1, 4, 1, 1).expand(2, 4, 3, 3).clone()
    idx = torch.tensor([0, permutation_index([3, 1, 0, 2])])
    out = permute_frames(clips, idx)
    assert out[0, :, 0, 0].tolist() == [0, 1, 2, 3]
    assert out[1, :, 0, 0].tolist() == [3, 1, 0, 2]


def test_augment_same_parameters_for_every_frame_and_bounded_shift():
    g = torch.Generator().manual_seed(0)
    frame = torch.zeros(32, 32)
    frame[12:20, 12:20] = 1
    clips = frame.expand(6, 4, 32, 32).clone()
    out = augment_clips(clips, generator=g)
    # Every frame of a clip got the same transform.
    assert torch.allclose(out[:, :1].expand_as(out), out, atol=1e-6)
    # Mass is preserved up to interpolation: the square stays inside the 32 px frame.
    assert torch.allclose(out.sum((2, 3)), clips.sum((2, 3)), rtol=0.15)
    # Different clips got different draws.
    assert not torch.allclose(out[0], out[1])


def test_augment_identity_when_disabled():
    clips = torch.rand(2, 3, 16, 16)
    out = augment_clips(clips, pad=0, max_degrees=0, p_flip=0.0)
    torch.testing.assert_close(out, clips, atol=1e-5, rtol=0)


def test_augment_flip_only_mirrors():
    clips = torch.rand(2, 3, 16, 16)
    out = augment_clips(clips, pad=0, max_degrees=0, p_flip=1.0)
    torch.testing.assert_close(out, clips.flip(-1), atol=1e-5, rtol=0)


def test_to_model_input_layout():
    x = to_model_input(torch.rand(2, 4, 8, 8))
    assert x.shape == (2, 3, 4, 8, 8)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
