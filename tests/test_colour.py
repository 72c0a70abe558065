"""Colour DICOMs decode to the colours pydicom itself gives, and to the documented grey.

pydicom's shipped ultrasound files are the reference: its ``pixel_array`` (RGB; YBR converted
to RGB) and ``apply_color_lut`` (PALETTE COLOR). Grey is ITU-R BT.601 luma, computed here in
floating point, independently of the package's integer version.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

from echoclr.data.video import read_video
from echoclr.data.video_types import to_grayscale


def bt601_gray(rgb: np.ndarray) -> np.ndarray:
    """Float BT.601 luma 0.299 R + 0.587 G + 0.114 B, rounded: uint8."""
    rgb = rgb.astype(np.float64)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


def as_video(frames: np.ndarray, n_frames: int) -> np.ndarray:
    """pydicom drops the frame axis of single-frame files: put it back."""
    return frames[None] if n_frames == 1 else frames


def reference_rgb(name: str) -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file(name))
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        if rgb.dtype != np.uint8:  # a 16-bit LUT: full scale 65535 maps to 255
            rgb = np.rint(rgb.astype(np.float64) * 255 / 65535)
        pixels = rgb
    return as_video(np.asarray(pixels), n_frames)


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


def test_rgb_dicom_keeps_channel_order_exactly():
    ref = reference_rgb("examples_rgb_color.dcm")
    got = read_video(get_testdata_file("examples_rgb_color.dcm")).frames
    assert got.shape == ref.shape
    # The file holds real colour (red and blue differ), so a channel swap cannot hide.
    assert diff(ref[..., 0], ref[..., 2]).mean() > 5
    np.testing.assert_array_equal(got, ref)


def test_palette_colour_dicom_goes_through_its_lookup_table():
    ref = reference_rgb("examples_palette.dcm")
    got = read_video(get_testdata_file("examples_palette.dcm")).frames
    assert got.shape == ref.shape and got.shape[-1] == 3
    assert diff(got, ref).max() <= 1  # 16-bit LUT entries reduced to 8 bits
    # The LUT is not the identity: the stored indices are not what the display shows.
    raw = as_video(pydicom.dcmread(get_testdata_file("examples_palette.dcm")).pixel_array, 1)
    assert diff(ref[..., 0], raw).mean() > 5


def test_ybr_jpeg_dicom_matches_pydicoms_rgb():
    ref = reference_rgb("examples_ybr_color.dcm")
    got = read_video(get_testdata_file("examples_ybr_color.dcm")).frames
    assert got.shape == ref.shape
    d = diff(got, ref)
    assert d.max() <= 4 and d.mean() < 0.5  # two JPEG decoders may differ by rounding


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "examples_palette.dcm",
                                  "examples_ybr_color.dcm"])
def test_gray_of_colour_dicoms_is_bt601_luma(name):
    ref = bt601_gray(reference_rgb(name).astype(np.float64))
    got = to_grayscale(read_video(get_testdata_file(name)).frames)
    assert got.shape == ref.shape and got.dtype == np.uint8
    tolerance = 5 if name == "examples_ybr_color.dcm" else 1  # JPEG decoder rounding, see above
    assert diff(got, ref).max() <= tolerance
    assert diff(got, ref).mean() < 0.6
