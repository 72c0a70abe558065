"""Decoding and preprocessing in bounded memory (data/reduce.py): the two-pass path gives the
frames the in-memory path gives, peak memory stays below the frames' own size, and a long
video is read only as far as max_frames."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pydicom.pixels.decoders.base as decoder_base
import pytest

from _video_fixtures import echo_frames, write_dicom
from echoclr.data import reduce as reduce_module
from echoclr.data.cache import decode_and_preprocess
from echoclr.data.preprocess import Preprocessing, preprocess
from echoclr.data.video import read_video, write_video
from echoclr.data.video_types import Video


def colour_frames(t=24, h=96, w=128):
    gray = echo_frames(t=t, h=h, w=w, seed=4)[0]
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[t // 2:, 20:40, 30:60, 0] = 250  # colour appears mid-video (a colour-flow box)
    return rgb


@pytest.mark.parametrize("kind", ["gray-avi", "colour-avi", "16bit-dicom", "ybr-dicom"])
@pytest.mark.parametrize("target_fps", [None, 20.0])
def test_two_pass_gives_the_in_memory_frames(tmp_path, monkeypatch, kind, target_fps):
    gray = echo_frames(t=24, h=96, w=128, seed=3)[0]
    path = tmp_path / ("v.avi" if kind.endswith("avi") else "v.dcm")
    if kind == "gray-avi":
        write_video(path, gray, fps=50, lossless=True)
    elif kind == "colour-avi":
        write_video(path, colour_frames(), fps=50, lossless=True)
    elif kind == "16bit-dicom":
        write_dicom(path, gray.astype(np.uint16) * 16, bits=12, frame_time_ms=20.0)
    else:
        write_dicom(path, colour_frames(), photometric="YBR_FULL", frame_time_ms=20.0)
    prep = Preprocessing(size=24, max_frames=10, min_fps=25.0, target_fps=target_fps)
    held, info_held, *_ = decode_and_preprocess(path, prep)
    monkeypatch.setattr(reduce_module, "GRAY_BUDGET", 0)  # every video takes two passes
    streamed, info_streamed, *_ = decode_and_preprocess(path, prep)
    np.testing.assert_array_equal(streamed, held)
    assert info_streamed == info_held
    video = read_video(path, max_frames=prep.source_frames)  # ... and what preprocess gives
    reference, _ = preprocess(Video(video.frames, video.fps, video.meta), size=24, max_frames=10,
                              target_fps=target_fps)
    np.testing.assert_array_equal(held, reference)


def test_peak_memory_stays_below_the_frames_own_size(tmp_path, monkeypatch):
    """100 frames of 512 x 512 are 26 MB of gray; decoding holds far less than that."""
    frames = np.tile(echo_frames(t=10, h=512, w=512, seed=2)[0], (10, 1, 1))
    path = write_dicom(tmp_path / "big.dcm", frames)
    del frames
    monkeypatch.setattr(reduce_module, "GRAY_BUDGET", 4 * 1024**2)
    prep = Preprocessing(size=32, max_frames=100, min_fps=25.0, target_fps=None)
    tracemalloc.start()
    out, _, _, _ = decode_and_preprocess(path, prep)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (100, 32, 32)
    assert peak < 16 * 1024**2, f"peak {peak / 1024**2:.1f} MiB"


def test_a_long_video_is_accepted_and_read_only_to_max_frames(tmp_path, monkeypatch):
    """20,000 frames (over the 10,000-frame limit of a whole read) with max_frames 10: ten are
    decoded."""
    frames = np.tile(echo_frames(t=4, h=24, w=32)[0], (5000, 1, 1))
    path = write_dicom(tmp_path / "long.dcm", frames)
    decoded = []
    real = decoder_base.Decoder.as_array

    def counting(self, src, *args, **kwargs):
        decoded.append(kwargs.get("index"))
        return real(self, src, *args, **kwargs)

    monkeypatch.setattr(decoder_base.Decoder, "as_array", counting)
    prep = Preprocessing(size=16, max_frames=10, min_fps=25.0, target_fps=None)
    out, _, source, _ = decode_and_preprocess(path, prep)
    assert out.shape == (10, 16, 16) and source.n_frames == 20_000
    assert sorted(decoded) == list(range(10))


@pytest.mark.parametrize("kind", ["avi", "dicom"])
def test_the_decoded_size_limit_binds_only_a_read_that_holds_every_frame(tmp_path, monkeypatch,
                                                                         kind):
    """A 4096² x 100 JPEG DICOM (4.7 GiB as RGB) was refused by the 2 GiB limit meant for
    holding every frame; ingest reduces frame by frame, so it must not apply there."""
    from echoclr.data import video as video_module
    from echoclr.data import video_types
    from echoclr.data.video_types import VideoReadError

    frames = echo_frames(t=12, h=48, w=64, seed=1)[0]
    path = tmp_path / ("v.avi" if kind == "avi" else "v.dcm")
    if kind == "avi":
        write_video(path, frames, fps=30)
    else:
        write_dicom(path, frames)
    monkeypatch.setattr(video_types, "MAX_DECODED_BYTES", 10_000)  # below one video's bytes
    monkeypatch.setattr(video_module, "MAX_DECODED_BYTES", 10_000)
    with pytest.raises(VideoReadError, match="GiB limit"):
        read_video(path)
    prep = Preprocessing(size=16, max_frames=12, min_fps=25.0, target_fps=None)
    cached, _, _, _ = decode_and_preprocess(path, prep)
    assert cached.shape == (12, 16, 16)
