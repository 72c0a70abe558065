"""Fan (sector) masks: synthetic sectors with overlays, degenerate input, DICOM regions."""

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from scipy import ndimage

from _video_fixtures import echo_frames
from echoclr.data.fan import estimate_fan, fan_mask, region_mask
from echoclr.data.video import read_video


def test_sector_included_static_text_excluded():
    frames, sector, text = echo_frames(t=12, h=64, w=80)
    mask = fan_mask(frames)
    assert mask.dtype == bool and mask.shape == sector.shape
    assert mask[sector].mean() > 0.97
    assert not mask[text].any()
    assert not (mask & ~ndimage.binary_dilation(sector)).any()  # within a pixel of the sector


def test_moving_ecg_trace_touching_the_sector_is_cut_off():
    frames, sector, _ = echo_frames(t=12, h=96, w=120, overlay=False)
    trace = np.zeros_like(sector)
    for t in range(len(frames)):  # a 1-px trace that sweeps the whole width, below the sector
        row = 90 + (t % 3)
        frames[t, row, :] = 200
        trace[row, :] = True
    trace &= ~sector
    mask = fan_mask(frames)
    assert mask[trace].mean() < 0.05
    assert mask[sector].mean() > 0.97


def test_rgb_input_is_accepted():
    frames, sector, _ = echo_frames()
    mask = fan_mask(np.repeat(frames[..., None], 3, axis=-1))
    assert mask[sector].mean() > 0.97


@pytest.mark.parametrize("frames, reason", [
    (np.zeros((8, 32, 40), np.uint8), "no pixel changes"),
    (echo_frames(t=1)[0], "single frame"),
    (np.full((8, 32, 40), 90, np.uint8), "no pixel changes"),
])
def test_degenerate_input_masks_nothing_and_says_why(frames, reason):
    estimate = estimate_fan(frames)
    assert not estimate.ok and reason in estimate.reason
    assert estimate.mask.all() and estimate.mask.shape == frames.shape[1:]
    assert fan_mask(frames).all()


def test_tiny_moving_speck_is_not_a_fan():
    frames = np.zeros((6, 64, 64), np.uint8)
    frames[::2, 30:33, 30:33] = 255
    estimate = estimate_fan(frames)
    assert not estimate.ok and "covers only" in estimate.reason


def test_real_cine_fan_excludes_burned_in_text():
    video = read_video(get_testdata_file("examples_ybr_color.dcm"))
    gray = video.frames.mean(axis=-1)
    estimate = estimate_fan(video.frames)
    assert estimate.ok
    static_bright = (gray.std(axis=0) == 0) & (gray.mean(axis=0) > 40)  # overlay text
    assert static_bright.sum() > 200
    assert not estimate.mask[static_bright].any()
    assert 0.2 < estimate.mask.mean() < 0.6


def test_region_mask_union_and_implausible_boxes():
    mask = region_mask((40, 50), [(5, 4, 24, 19), (30, 4, 49, 39)])
    assert mask.sum() == 20 * 16 + 20 * 36
    assert mask[4, 5] and mask[19, 24] and not mask[20, 24]
    assert region_mask((3, 40, 50), [(0, 0, 49, 39)]).all()  # (T, H, W) shape
    assert region_mask((40, 50), []) is None
    assert region_mask((40, 50), [(0, 0, 50, 39)]) is None  # x1 outside the image
    assert region_mask((40, 50), [(10, 10, 5, 20)]) is None  # empty box
    assert region_mask((40, 50), [(0, 0, 3, 3)]) is None  # too small to be the image area


def test_region_of_real_file_larger_than_image_is_implausible():
    video = read_video(get_testdata_file("examples_ybr_color.dcm"), max_frames=2)
    assert video.meta["regions"]
    assert region_mask(video.frames.shape, video.meta["regions"]) is None
