"""Video I/O: pydicom's real ultrasound DICOMs, synthetic DICOMs, AVI/MP4 round trips, errors."""

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import convert_color_space
from pydicom.uid import RLELossless

from _video_fixtures import PHI, echo_frames, pack_ybr_full_422, write_dicom
from echoclr.data import video_types as video_module
from echoclr.data.dicom import hash_identifier
from echoclr.data.video import read_video, write_video
from echoclr.data.video_types import Video, VideoReadError, to_grayscale

REAL_DICOMS = ["examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm",
               "examples_jpeg2k.dcm"]


@pytest.fixture(scope="module")
def frames():
    return echo_frames(t=10, h=48, w=64)[0]


@pytest.mark.parametrize("name", REAL_DICOMS)
def test_real_ultrasound_dicoms_decode(name):
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    video = read_video(path, salt="s")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    assert video.frames.dtype == np.uint8
    assert video.frames.shape[:3] == (n_frames, ds.Rows, ds.Columns)
    assert video.frames.ndim == 3 or video.frames.shape[3] == 3
    assert video.frames.max() > 0
    assert video.meta["source_format"] == "dicom"
    if "FrameTime" in ds:
        assert video.fps == pytest.approx(1000 / float(ds.FrameTime), rel=1e-3)
    identifiers = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "StudyInstanceUID")]
    assert not any(len(v) > 3 and v in str(video.meta) for v in identifiers)


def test_ybr_cine_is_converted_to_rgb_and_can_be_cut_short():
    video = read_video(get_testdata_file("examples_ybr_color.dcm"), max_frames=4)
    assert video.frames.shape == (4, 240, 320, 3)
    # Gray ultrasound: after YBR → RGB the three channels agree; raw YBR would have Cb, Cr ≈ 128.
    channels = video.frames.reshape(-1, 3).astype(int)
    assert np.abs(channels[:, 0] - channels[:, 2]).mean() < 3


def test_uncompressed_ybr_full_becomes_rgb(tmp_path, frames):
    rgb = np.stack([frames, frames // 2, 255 - frames], axis=-1)
    path = write_dicom(tmp_path / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"),
                       photometric="YBR_FULL")
    assert np.abs(read_video(path).frames.astype(int) - rgb).max() <= 2


def test_uncompressed_ybr_full_422_becomes_rgb(tmp_path, frames):
    rgb = np.stack([frames, frames // 2, 255 - frames], axis=-1)
    rgb = np.repeat(rgb[:, :, ::2], 2, axis=2)  # chroma constant over pixel pairs, as 4:2:2 keeps
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_dicom(tmp_path / "y422.dcm", ybr, photometric="YBR_FULL_422",
                       pixel_data=pack_ybr_full_422(ybr))
    assert np.abs(read_video(path).frames.astype(int) - rgb).max() <= 2


def test_monochrome1_is_inverted(tmp_path, frames):
    path = write_dicom(tmp_path / "m1.dcm", frames, photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_video(path).frames, 255 - frames)


def test_16bit_monochrome2_multiframe_is_scaled_to_uint8(tmp_path, frames):
    path = write_dicom(tmp_path / "m16.dcm", frames.astype(np.uint16) * 16, bits=12)
    video = read_video(path)
    assert video.frames.dtype == np.uint8 and video.frames.shape == frames.shape
    expected = np.rint(frames.astype(np.float64) * 255 / frames.max())  # min is 0
    assert np.abs(video.frames - expected).max() <= 1


def test_16bit_window_is_applied(tmp_path, frames):
    values = frames.astype(np.uint16) * 16
    path = write_dicom(tmp_path / "w.dcm", values, bits=12, WindowCenter=1000, WindowWidth=1000)
    got = read_video(path).frames
    assert got[values <= 500].max() == 0 and got[values >= 1500].min() == 255


def test_rle_compressed_matches_uncompressed(tmp_path, frames):
    plain = write_dicom(tmp_path / "plain.dcm", frames)
    ds = pydicom.dcmread(plain)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(read_video(tmp_path / "rle.dcm").frames, frames)


def test_single_frame_dicom_has_t_1(tmp_path, frames):
    video = read_video(write_dicom(tmp_path / "one.dcm", frames[:1]))
    assert video.frames.shape == (1, *frames.shape[1:])


@pytest.mark.parametrize("tags, fps", [
    (dict(cine_rate=50, frame_time_ms=33.333), 50.0),
    (dict(frame_time_ms=20.0), 50.0),
    (dict(frame_time_ms=None, RecommendedDisplayFrameRate=25), 25.0),
    (dict(frame_time_ms=None), None),
])
def test_dicom_fps_precedence(tmp_path, frames, tags, fps):
    assert read_video(write_dicom(tmp_path / "f.dcm", frames[:2], **tags)).fps == fps


def test_dicom_meta_hashes_identifiers_and_keeps_no_phi(tmp_path, frames):
    path = write_dicom(tmp_path / "phi.dcm", frames[:2], regions=[(2, 3, 60, 40)])
    meta = read_video(path, salt="pepper").meta
    ds = pydicom.dcmread(path)
    assert meta["patient_id_hash"] == hash_identifier(PHI["PatientID"], "pepper")
    assert meta["study_uid_hash"] == hash_identifier(ds.StudyInstanceUID, "pepper")
    assert meta["patient_id_hash"] != hash_identifier(PHI["PatientID"], "")
    assert meta["regions"] == [(2, 3, 60, 40)]
    text = repr(meta)
    assert not any(v in text for v in [*PHI.values(), "Doe", ds.StudyInstanceUID])


def test_dicom_detected_by_preamble_without_extension(tmp_path, frames):
    path = write_dicom(tmp_path / "IM0001", frames[:2])
    assert read_video(path).meta["source_format"] == "dicom"


@pytest.mark.parametrize("suffix, lossless", [(".avi", False), (".avi", True), (".mp4", False)])
@pytest.mark.parametrize("color", [False, True])
def test_round_trip(tmp_path, frames, suffix, lossless, color):
    data = np.stack([frames, frames // 2, 255 - frames], axis=-1) if color else frames
    path = tmp_path / f"v{suffix}"
    write_video(path, data, fps=29.97)
    if lossless:
        write_video(path, data, fps=29.97, lossless=True)
    video = read_video(path)
    assert video.frames.shape == data.shape  # gray comes back (T, H, W)
    assert video.fps == pytest.approx(29.97, abs=1e-3)
    assert video.meta["source_format"] == suffix[1:]
    error = np.abs(video.frames.astype(int) - data)
    if lossless:
        assert error.max() == 0
    elif suffix == ".avi":  # MJPG at q=2, 4:4:4
        assert error.mean() < 3
    else:  # H.264 4:2:0 halves chroma resolution: compare luma
        luma_error = np.abs(to_grayscale(video.frames).astype(int) - to_grayscale(data))
        assert luma_error.mean() < 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_colour_appearing_mid_video_gives_rgb_for_all_frames(tmp_path, frames):
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    rgb[5:, 10:20, 10:20] = [200, 30, 30]  # a colour Doppler box from frame 5 on
    write_video(tmp_path / "doppler.avi", rgb, fps=30)
    video = read_video(tmp_path / "doppler.avi")
    assert video.frames.shape == rgb.shape
    assert np.abs(video.frames.astype(int) - rgb).mean() < 3
    write_video(tmp_path / "gray.avi", np.repeat(frames[..., None], 3, axis=-1), fps=30)
    assert read_video(tmp_path / "gray.avi").frames.shape == frames.shape  # RGB of gray → gray


def test_odd_sized_mp4_and_max_frames(tmp_path, frames):
    write_video(tmp_path / "odd.mp4", frames[:, :47, :63], fps=30)
    video = read_video(tmp_path / "odd.mp4", max_frames=4)
    assert video.frames.shape == (4, 47, 63)


def test_path_with_spaces_and_non_ascii(tmp_path, frames):
    folder = tmp_path / "échos du cœur 心脏"
    folder.mkdir()
    write_video(folder / "vidéo 1.avi", frames, fps=30)
    write_dicom(folder / "ciné 2.dcm", frames)
    assert read_video(folder / "vidéo 1.avi").frames.shape == frames.shape
    assert read_video(folder / "ciné 2.dcm").frames.shape == frames.shape


def test_to_grayscale_uses_bt601_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    luma = rgb.astype(float) @ [0.299, 0.587, 0.114]
    assert np.abs(to_grayscale(rgb) - luma).max() <= 1
    assert to_grayscale(np.full((1, 1, 1, 3), 200, np.uint8)).item() == 200
    gray = np.zeros((2, 3, 4), np.uint8)
    assert to_grayscale(gray) is gray or np.array_equal(to_grayscale(gray), gray)


def test_write_video_rejects_bad_input(tmp_path, frames):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.avi", frames.astype(np.float32), fps=30)
    with pytest.raises(ValueError, match="lossless"):
        write_video(tmp_path / "x.mp4", frames, fps=30, lossless=True)
    assert list(tmp_path.iterdir()) == []


# --- failures: each names the file and the reason -------------------------------------------

def _reason(path, **kwargs) -> str:
    with pytest.raises(VideoReadError) as info:
        read_video(path, **kwargs)
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {info.value.reason}"
    return info.value.reason


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.avi").touch()
    assert "empty" in _reason(tmp_path / "empty.avi")


def test_missing_file(tmp_path):
    assert "no such file" in _reason(tmp_path / "nope.avi")


def test_text_named_avi_and_dcm(tmp_path):
    (tmp_path / "notes.avi").write_text("not a video\n" * 50)
    (tmp_path / "notes.dcm").write_text("not a dicom\n" * 50)
    assert "not a readable video" in _reason(tmp_path / "notes.avi")
    assert "not a DICOM" in _reason(tmp_path / "notes.dcm")


def test_truncated_avi(tmp_path, frames):
    write_video(tmp_path / "full.avi", frames, fps=30)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 6 // 10])
    assert "truncated" in _reason(tmp_path / "cut.avi")
    assert read_video(tmp_path / "cut.avi", max_frames=2).frames.shape[0] == 2  # intact start


def test_truncated_dicom(tmp_path, frames):
    data = write_dicom(tmp_path / "full.dcm", frames).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    assert "NumberOfFrames" in _reason(tmp_path / "cut.dcm")


def test_dicom_without_pixel_data(tmp_path, frames):
    assert "no pixel data" in _reason(write_dicom(tmp_path / "sr.dcm", frames, with_pixels=False))


@pytest.mark.parametrize("declared", [6, 14])
def test_number_of_frames_disagreeing_with_pixel_data(tmp_path, frames, declared):
    path = write_dicom(tmp_path / "nf.dcm", frames, number_of_frames=declared)
    reason = _reason(path)
    assert f"NumberOfFrames is {declared}" in reason and f"holds {len(frames)}" in reason


def test_absurd_dicom_dimensions_refused_before_decoding(tmp_path, frames):
    tiny = frames[:1].tobytes()
    big = write_dicom(tmp_path / "big.dcm", frames[:1], pixel_data=tiny, Rows=5000)
    long = write_dicom(tmp_path / "long.dcm", frames[:1], pixel_data=tiny, number_of_frames=20000)
    assert "4096x4096 limit" in _reason(big)
    assert "10000-frame limit" in _reason(long)


def test_absurd_video_dimensions_refused(tmp_path, frames, monkeypatch):
    write_video(tmp_path / "v.avi", frames, fps=30)
    monkeypatch.setattr(video_module, "MAX_SIDE", 32)
    assert "limit" in _reason(tmp_path / "v.avi")
    monkeypatch.setattr(video_module, "MAX_SIDE", 4096)
    monkeypatch.setattr(video_module, "MAX_DECODED_BYTES", 10_000)
    assert "GiB limit" in _reason(tmp_path / "v.avi")


def test_video_dataclass_contract():
    video = Video(np.zeros((1, 2, 2), np.uint8), None, {})
    assert video.fps is None and video.meta == {}


def test_bare_stream_named_avi_is_refused_not_given_a_made_up_rate(tmp_path):
    """A stored ZIP of JPEGs named .avi demuxes as raw MJPEG at FFmpeg's default 25 fps."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(tmp_path / "photos.avi", "w", compression=zipfile.ZIP_STORED) as z:
        for k in range(4):
            image = io.BytesIO()
            Image.fromarray(echo_frames(t=1, h=48, w=64, seed=k)[0][0]).save(image, "JPEG")
            z.writestr(f"{k}.jpg", image.getvalue())
    reason = _reason(tmp_path / "photos.avi")
    assert "bare mjpeg stream" in reason and "25 fps" in reason


def test_16_bit_declared_with_8_bit_data_names_bits_allocated(tmp_path, frames):
    path = write_dicom(tmp_path / "bits.dcm", frames, bits=16, pixel_data=frames.tobytes())
    reason = _reason(path)
    assert "BitsAllocated is 16" in reason and "BitsAllocated 8 needs" in reason
    assert "NumberOfFrames" not in reason
