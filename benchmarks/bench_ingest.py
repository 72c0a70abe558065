"""Ingest throughput (videos/s) for AVI and DICOM inputs, and cached clip reads (clips/s), per core.

    PYTHONPATH=src python benchmarks/bench_ingest.py [--videos 8] [--frames 100] [--height 480]
        [--width 640] [--clips 3000]

Synthetic echo-like cines (moving speckle in a sector, static text outside) are written to a
temporary folder as MJPG AVI, uncompressed MONOCHROME2 DICOM and, when OpenCV is installed (the
``bench`` extra), JPEG-baseline YBR_FULL_422 DICOM like most ultrasound archives. The process is
pinned to one core, so every figure is per core; clip reads run on a warm page cache.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian, JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid,
)

from echoclr.commands.ingest import IngestConfig, ingest  # noqa: E402
from echoclr.data.video import read_video, write_video  # noqa: E402


def echo_cine(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """uint8 (t, h, w): gamma speckle moving inside a 70° sector, static text blocks outside."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w].astype(np.float32)
    dist, angle = np.hypot(x - w / 2, y), np.degrees(np.arctan2(x - w / 2, y + 1e-6))
    sector = (dist < 0.95 * h) & (np.abs(angle) < 35)
    frames = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        speckle = rng.gamma(2.0, 25.0, size=(h, w)).astype(np.float32) + 20
        speckle += 80 * np.exp(-((x - w / 2 - w / 10 * np.sin(i / 5)) ** 2) / (w / 4))
        frames[i] = np.where(sector, np.clip(speckle, 0, 255), 0)
    frames[:, 5:25, 5:120] = 220  # a patient banner
    frames[:, h - 30:h - 10, :] = np.where(sector[h - 30:h - 10], frames[:, h - 30:h - 10], 200)
    return frames


def write_dicom(path: Path, frames: np.ndarray, *, jpeg: bool) -> None:
    """Multi-frame US DICOM: MONOCHROME2 uncompressed, or RGB JPEG baseline (YBR_FULL_422)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.PatientID, ds.Modality = generate_uid(), "BENCH", "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = *frames.shape[1:], len(frames), 33.3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if jpeg:
        import cv2

        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = "YBR_FULL_422"
        params = [cv2.IMWRITE_JPEG_QUALITY, 95,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
        encoded = [cv2.imencode(".jpg", np.repeat(f[..., None], 3, -1), params)[1].tobytes()
                   for f in frames]
        ds.PixelData = pydicom.encaps.encapsulate(encoded, has_bot=True)
        ds["PixelData"].VR = "OB"
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


def time_ingest(folder: Path, files: list[Path], size: int, max_frames: int) -> tuple[float, int]:
    manifest = folder / f"{files[0].suffix[1:]}_{files[0].stem}.csv"
    pd.DataFrame({"path": [str(f) for f in files],
                  "study_id": [f"S{i}" for i in range(len(files))]}).to_csv(manifest, index=False)
    out = folder / f"cache_{manifest.stem}"
    start = time.perf_counter()
    result = ingest(IngestConfig(manifest=str(manifest), out=str(out), size=size,
                                 max_frames=max_frames))
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"benchmark inputs were skipped: {result.skipped}")
    return len(files) / elapsed, out


def time_decoders(files: list[Path]) -> dict[str, float]:
    """Frames/s decoding the AVIs with PyAV (read_video) and, if installed, cv2.VideoCapture."""
    rates = {}
    start, n = time.perf_counter(), 0
    for f in files:
        n += len(read_video(f).frames)
    rates["PyAV (read_video)"] = n / (time.perf_counter() - start)
    try:
        import cv2
    except ImportError:
        return rates
    cv2.setNumThreads(1)
    start, n = time.perf_counter(), 0
    for f in files:
        capture = cv2.VideoCapture(str(f))
        while True:
            ok, _ = capture.read()
            if not ok:
                break
            n += 1
        capture.release()
    rates["OpenCV (VideoCapture)"] = n / (time.perf_counter() - start)
    return rates


def time_clip_reads(cache: Path, n_clips: int, clip_len: int = 16, seed: int = 0) -> float:
    """Random clip_len-frame clips, each from a fresh np.load(mmap_mode='r'), as clips/s."""
    paths = [cache / p for p in pd.read_csv(cache / "manifest.csv")["path"]]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(n_clips):
        video = np.load(paths[rng.integers(len(paths))], mmap_mode="r")
        first = rng.integers(0, len(video) - clip_len + 1)
        np.asarray(video[first:first + clip_len]).sum()  # touch every byte of the clip
    return n_clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="videos per input format")
    parser.add_argument("--frames", type=int, default=100, help="frames per video")
    parser.add_argument("--height", type=int, default=480, help="frame height, pixels")
    parser.add_argument("--width", type=int, default=640, help="frame width, pixels")
    parser.add_argument("--size", type=int, default=112, help="cached frame side, pixels")
    parser.add_argument("--clips", type=int, default=3000, help="clip reads to time")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        import cv2  # noqa: F401
        has_cv2 = True
    except ImportError:
        has_cv2 = False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cines = [echo_cine(args.frames, args.height, args.width, seed=i)
                 for i in range(args.videos)]
        inputs = {"AVI (MJPG)": [], "DICOM (uncompressed)": []}
        if has_cv2:
            inputs["DICOM (JPEG baseline)"] = []
        for i, cine in enumerate(cines):
            write_video(folder / f"v{i}.avi", cine, fps=30)
            inputs["AVI (MJPG)"].append(folder / f"v{i}.avi")
            write_dicom(folder / f"raw{i}.dcm", cine, jpeg=False)
            inputs["DICOM (uncompressed)"].append(folder / f"raw{i}.dcm")
            if has_cv2:
                write_dicom(folder / f"jpg{i}.dcm", cine, jpeg=True)
                inputs["DICOM (JPEG baseline)"].append(folder / f"jpg{i}.dcm")
        print(f"{args.videos} videos per format, {args.frames} frames of {args.width}x{args.height}"
              f" → {args.size}x{args.size}; one core")
        cache = None
        for name, files in inputs.items():
            rate, out = time_ingest(folder, files, args.size, args.frames)
            cache = cache or out
            print(f"ingest {name:24s} {rate:7.2f} videos/s  ({rate * args.frames:7.0f} frames/s)")
        for name, rate in time_decoders(inputs["AVI (MJPG)"]).items():
            print(f"decode AVI with {name:22s} {rate:7.0f} frames/s")
        rate = time_clip_reads(cache, args.clips)
        print(f"cached clip reads (16 frames, mmap)   {rate:7.0f} clips/s")


if __name__ == "__main__":
    main()
