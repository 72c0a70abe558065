"""Read echocardiogram videos (DICOM cine, AVI, MP4) into uint8 arrays, and write AVI/MP4.

DICOM goes through pydicom in :mod:`echoclr.data.dicom` (JPEG 2000 and RLE via the pylibjpeg
plugins; JPEG baseline via Pillow's libjpeg-turbo when Pillow is installed, several times faster);
AVI/MP4 through PyAV rather than OpenCV: PyAV links a full FFmpeg build (every codec echo
archives use, including MJPG, H.264 and FFV1 lossless), reports the stream's own rational frame
rate and frame count instead of OpenCV's float guesses (``CAP_PROP_FPS`` / ``CAP_PROP_FRAME_COUNT``
are estimates for some containers), exposes decoding errors as exceptions instead of silently
short reads, lets gray content be decoded as gray (OpenCV always converts to BGR), and installs
as a plain pip wheel. Measured with ``benchmarks/bench_ingest.py`` on one core: 477 vs 292
frames/s (640x480 MJPG) and 3790 vs 3251 frames/s (112x112) for PyAV vs ``cv2.VideoCapture``.

Every failure raises :class:`VideoReadError` naming the file and the reason; absurd sizes are
refused from the header, before any pixel is decoded. :func:`open_video` gives a
:class:`~echoclr.data.video_types.FrameSource` that decodes one frame at a time (what ingest's
bounded-memory path reads); :func:`read_video` stacks its frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from echoclr.atomic import atomic_write
from echoclr.data.dicom import open_dicom
from echoclr.data.dicom_header import is_dicom
from echoclr.data.video_types import (
    MAX_DECODED_BYTES, MAX_FRAMES, FrameSource, Video, VideoReadError, check_size, stack_frames,
)

__all__ = ["is_dicom", "open_video", "read_video", "write_video"]
# Demuxers of bare streams: they store no frame rate, FFmpeg makes one up (25 fps).
BARE_STREAMS = {"mjpeg", "mpjpeg", "image2", "image2pipe", "rawvideo", "h261", "h263", "h264",
                "hevc", "vvc", "mpegvideo", "m4v", "cavsvideo", "dirac", "vc1", "avs2", "avs3"}


def open_video(path: str | os.PathLike, *, max_frames: int | None = None,
               salt: str = "", held: bool = False) -> FrameSource:
    """Open a DICOM cine (detected by its "DICM" preamble or a .dcm suffix), AVI or MP4 and check
    its header (sizes, frame count); frames are decoded later, one at a time. ``held``: the
    caller will hold every frame at once (``read_video``), so the decoded-size limit applies.

    Raises:
        VideoReadError: missing, empty, not a video, inconsistent or too large.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    try:
        if not path.is_file():
            raise VideoReadError(path, "no such file")
        if path.stat().st_size == 0:
            raise VideoReadError(path, "empty file (0 bytes)")
        if is_dicom(path):
            return open_dicom(path, max_frames, salt, held=held)
        return AVSource(path, max_frames, held=held)
    except VideoReadError:
        raise
    except Exception as err:  # a decoder's own exception: report it against the file
        raise VideoReadError(path, f"{type(err).__name__}: {err}") from err


def read_video(path: str | os.PathLike, *, max_frames: int | None = None, salt: str = "") -> Video:
    """Decode a DICOM cine, AVI or MP4 whole (up to ``max_frames``).

    Args:
        path: the file.
        max_frames: decode only the first ``max_frames`` frames (None: all).
        salt: key of the DICOM identifiers' pseudonyms (``study_uid_hash``, ``patient_id_hash``:
            HMAC-SHA256, 16 hex digits); identifiers never appear in clear.

    Returns:
        :class:`Video` with frames uint8 (T, H, W) or (T, H, W, 3) RGB (RGB whose channels
        are all equal comes back as (T, H, W)), fps (Hz) or None, and
        ``meta`` (always ``source_format``: "dicom", "avi", "mp4", ...).

    Raises:
        VideoReadError: missing, empty, not a video, truncated, inconsistent or too large.
    """
    source = open_video(path, max_frames=max_frames, salt=salt, held=True)
    try:
        frames = [f for _, f in source.frames(max_frames)]
    except VideoReadError:
        raise
    except MemoryError as err:
        raise VideoReadError(path, "out of memory while decoding") from err
    except Exception as err:  # a decoder's own exception: report it against the file
        raise VideoReadError(path, f"{type(err).__name__}: {err}") from err
    return Video(stack_frames(frames), source.fps, source.meta)


# --- PyAV (AVI, MP4, ...) -------------------------------------------------------------------

def _container_name(fmt_name: str) -> str:
    names = fmt_name.split(",")
    return "mp4" if "mp4" in names else names[0]


class AVSource:
    """An AVI/MP4 (any container PyAV reads that stores a frame rate), header checked."""

    def __init__(self, path: Path, max_frames: int | None, *, held: bool = False):
        self.path, self.held = path, held
        try:
            container = av.open(str(path), metadata_errors="ignore")
        except av.FFmpegError as err:
            raise VideoReadError(path, f"not a readable video ({err.strerror or err})") from err
        with container:
            fmt = container.format.name
            if fmt in BARE_STREAMS or fmt.endswith("_pipe"):
                raise VideoReadError(path, f"a bare {fmt} stream, not a video container: it "
                                     "stores no frame rate (FFmpeg would assume 25 fps); "
                                     "wrap it in AVI/MP4 with its real rate")
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(rate) if rate else None
            self.declared = stream.frames or None
            self.n_frames = self.declared
            estimate = self.declared or _estimate_frames(stream, container, self.fps)
            self.height, self.width = stream.codec_context.height, stream.codec_context.width
            check_size(path, estimate or 0, self.height, self.width, 3, max_frames,
                       held=held)
            self.meta = {"source_format": _container_name(fmt), "codec": stream.codec_context.name,
                         "n_frames_declared": estimate}

    def frames(self, stop: int | None, keep=None) -> Iterator[tuple[int, np.ndarray]]:
        """Gray (H, W) frames while every frame's chroma is neutral (cheaper, and gray is what
        they are), RGB (H, W, 3) once one is not; capped by the size limits."""
        # A header without a frame count cannot be checked up front: cap while decoding.
        cap = min(MAX_FRAMES, MAX_DECODED_BYTES // (self.height * self.width * 3)) \
            if self.held else MAX_FRAMES
        mode, n = "gray", 0
        with av.open(str(self.path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if n >= cap:
                        raise VideoReadError(
                            self.path, f"more than {cap} frames of {self.width}x{self.height}: "
                            f"over the {MAX_FRAMES}-frame or "
                            f"{MAX_DECODED_BYTES / 1024**3:.0f} GiB limit")
                    if mode == "gray" and not _neutral_chroma(frame):
                        mode = "rgb24"
                    if keep is None or n in keep:
                        yield n, frame.to_ndarray(format=mode)
                    n += 1
                    if stop is not None and n >= stop:
                        break
            except av.FFmpegError as err:
                raise VideoReadError(self.path, f"decoding failed after {n} frames "
                                     f"({err.strerror or err})") from err
        if n == 0:
            raise VideoReadError(self.path, "no decodable frames")
        if self.declared and n < min(self.declared, stop or self.declared):
            raise VideoReadError(self.path, f"truncated: the header declares {self.declared} "
                                 f"frames, only {n} decode")


def _neutral_chroma(frame) -> bool:
    """True for a gray frame format, or planar YUV whose chroma planes are all 128."""
    name = frame.format.name
    if name.startswith("gray"):
        return True
    if not name.startswith("yuv") or len(frame.planes) != 3 or any(
            c.bits != 8 for c in frame.format.components):  # 8-bit planar YUV only
        return False
    for plane in frame.planes[1:]:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        if not (rows[:, :plane.width] == 128).all():
            return False
    return True


def _estimate_frames(stream, container, fps: float | None) -> int | None:
    """Frame count from the duration when the container does not store it."""
    if fps is None:
        return None
    if stream.duration is not None and stream.time_base is not None:
        return round(float(stream.duration * stream.time_base) * fps)
    if container.duration is not None:
        return round(container.duration / av.time_base * fps)
    return None


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *,
                lossless: bool = False) -> None:
    """Write uint8 (T, H, W) gray or (T, H, W, 3) RGB frames atomically (tmp file, then rename).

    ``.avi``: MJPG at quality 2 (near lossless, 4:4:4), or FFV1 (exactly lossless) with
    ``lossless=True``. ``.mp4``: H.264 (libx264, CRF 12, 4:2:0, or 4:4:4 for odd sizes) if
    PyAV has it, else MPEG-4 part 2. Gray frames are stored with neutral chroma, so
    :func:`read_video` returns them as (T, H, W) again.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (
            frames.ndim == 4 and frames.shape[-1] != 3) or len(frames) == 0:
        raise ValueError(f"{path}: expected uint8 (T, H, W) or (T, H, W, 3) frames with T >= 1, "
                         f"got {frames.dtype} {frames.shape}")
    if not fps or fps <= 0:
        raise ValueError(f"{path}: fps must be > 0, got {fps}")
    suffix = path.suffix.lower()
    if suffix not in (".avi", ".mp4"):
        raise ValueError(f"{path}: write_video writes .avi or .mp4, not {suffix!r}")
    if lossless and suffix != ".avi":
        raise ValueError(f"{path}: lossless output needs .avi (FFV1)")
    gray = frames.ndim == 3
    codec, pix_fmt, options = _encoder(suffix, gray, lossless, frames.shape[1:3])

    def encode(f) -> None:
        with av.open(f, mode="w", format=suffix[1:]) as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = pix_fmt
            stream.options = options
            in_fmt = "gray" if gray else "rgb24"
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=in_fmt)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    atomic_write(path, encode)


def _encoder(suffix: str, gray: bool, lossless: bool, shape: tuple[int, int]):
    """(codec, pixel format, options) for one output."""
    if suffix == ".avi":
        if lossless:
            return "ffv1", "gray" if gray else "bgr0", {}
        # qmin=qmax=2 pins MJPG's quantiser at its finest useful step.
        return "mjpeg", "yuvj444p", {"qmin": "2", "qmax": "2"}
    if "libx264" in av.codecs_available:
        even = shape[0] % 2 == 0 and shape[1] % 2 == 0
        return "libx264", "yuv420p" if even else "yuv444p", {"crf": "12", "preset": "fast"}
    return "mpeg4", "yuv420p", {"qmin": "2", "qmax": "2"}
