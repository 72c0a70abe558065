"""Peak memory (RSS) of ingesting ONE large JPEG multi-frame DICOM against its decoded size.

    PYTHONPATH=src python benchmarks/bench_ingest_memory.py [--height 2048] [--width 2048]
        [--frames 80] [--max-frames 32] [--photometric YBR_FULL_422] [--ecg]

``--height 4096 --width 4096 --frames 100`` reproduces the issue's 58 MB file (the size in MB
depends on ``--quality`` and the content; the decoded sizes are what matter).

The check is the bound stated in ``echoclr/data/reduce.py``: frames are converted to gray as
they are decoded, only the frames kept are read (``--max-frames``), and a video whose kept
full-resolution gray frames pass ``GRAY_BUDGET`` (256 MiB) is decoded twice instead of held, so
the peak is about ``min(T_read·H·W, 256 MiB) + 40·H·W + 3·CHUNK_BYTES`` bytes (+ the output, T_read·112² bytes,
negligible) over what the process holds before it decodes anything — where T_read is the number
of frames needed (``min(frames, max_frames)``), not the file's frame count.

The file is an Ultrasound Multi-frame DICOM in JPEG Baseline (1.2.840.10008.1.2.4.50): each
frame JPEG-encoded by Pillow (YBR_FULL_422: 4:2:2 chroma, as most ultrasound archives; or
MONOCHROME2) and encapsulated with a basic offset table. The content is echo-like and cheap to
make: one smoothed speckle field rolled sideways frame by frame inside a 70° sector, a static
banner outside it, and (``--ecg``, the default) a moving green ECG trace, so the chroma is not
neutral and frames take the colour decode path real echo files take.

Ingest is the real ``python -m echoclr ingest MANIFEST --out CACHE --size 112 --max-frames K
--workers 1 --salt bench`` in a subprocess, forked by a tiny go-between that reaps it with
``os.wait4`` for its own peak RSS (``ru_maxrss``), and timed; the baseline is the same
interpreter doing nothing but import the CLI and ``echoclr.commands.ingest``. It runs once
with every frame kept (``--max-frames`` = ``--frames``) and once with ``--max-frames`` smaller
than that, so only those frames are read. Each run must exit 0 and leave a cache of exactly one
entry, else this exits 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.encaps
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

from _bench import run_with_peak_rss  # benchmarks/_bench.py
from echoclr.data.reduce import GRAY_BUDGET
from echoclr.runs import machine_description

MIB = 2**20
FAN_BYTES_PER_PIXEL = 40  # reduce.py's docstring: ≈ 40·H·W bytes of fan estimation
RESIZE_BYTES = 3 * 32 * 1024**2  # ... and ≈ 3·CHUNK_BYTES of a chunk's resize temporaries

def echo_frames(t: int, h: int, w: int, *, rgb: bool, ecg: bool, seed: int = 0):
    """Yield ``t`` uint8 (h, w) or (h, w, 3) frames one at a time (a 4096² video is never held):
    a smoothed gamma speckle field rolled sideways inside a sector, a static banner, an ECG."""
    rng = np.random.default_rng(seed)
    small = rng.gamma(2.0, 40.0, size=(max(1, h // 4), max(1, w // 4))).clip(0, 255)
    # Upsampled speckle: JPEG compresses it about as well as real echo (smooth, mostly black).
    speckle = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BILINEAR))
    y, x = np.ogrid[:h, :w]
    sector = (np.hypot(x - w / 2, y) < 0.95 * h) & \
        (np.abs(np.degrees(np.arctan2(x - w / 2, y + 1e-6))) < 35)
    xs = np.arange(w)
    for i in range(t):
        frame = np.where(sector, np.roll(speckle, 3 * i, axis=1), 0).astype(np.uint8)
        frame[h // 100:h // 100 + max(2, h // 50), w // 100:w // 5] = 220  # a patient banner
        if rgb:
            frame = np.repeat(frame[..., None], 3, axis=-1)
            if ecg:  # 2 px green trace near the bottom, its phase moving with time
                rows = (0.95 * h + 0.02 * h * np.sin(2 * np.pi * (4 * xs / w + i / 30)))
                rows = rows.astype(int).clip(0, h - 2)
                frame[rows, xs] = frame[rows + 1, xs] = (0, 255, 0)
        yield frame


def write_dicom(path: Path, h: int, w: int, t: int, photometric: str, ecg: bool,
                quality: int) -> None:
    """A JPEG-baseline Ultrasound Multi-frame DICOM; only the compressed frames are held."""
    rgb = photometric == "YBR_FULL_422"
    encoded = []
    for frame in echo_frames(t, h, w, rgb=rgb, ecg=ecg):
        buf = BytesIO()
        # subsampling=1 is 4:2:2, what YBR_FULL_422 declares (ignored for gray).
        Image.fromarray(frame).save(buf, "JPEG", quality=quality, subsampling=1)
        encoded.append(buf.getvalue())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.PatientID, ds.Modality = generate_uid(), "BENCH", "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = h, w, t, 33.3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if rgb else 1), photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = pydicom.encaps.encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def run_child(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run ``cmd``: its exit status, wall seconds and peak RSS (MiB); killed past ``timeout``."""
    return run_with_peak_rss(cmd, log, timeout)


def check_cache(cache: Path, run: dict, cmd: list[str]) -> None:
    """Ingest exited 0 and cached exactly one video; exit 1 otherwise."""
    entries = len(list((cache / "videos").glob("*.npy"))) if (cache / "videos").is_dir() else 0
    rows = len(pd.read_csv(cache / "manifest.csv")) if (cache / "manifest.csv").is_file() else 0
    if run["rc"] != 0 or entries != 1 or rows != 1:
        sys.exit(f"{' '.join(cmd)}: exit {run['rc']}, {entries} .npy entries, {rows} manifest "
                 f"rows (want 0, 1, 1):\n{run['log']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=2048, help="frame height, pixels")
    p.add_argument("--width", type=int, default=2048, help="frame width, pixels")
    p.add_argument("--frames", type=int, default=80, help="frames in the file")
    p.add_argument("--max-frames", type=int, default=32,
                   help="ingest --max-frames of the second run (the first keeps every frame)")
    p.add_argument("--size", type=int, default=112, help="ingest --size")
    p.add_argument("--photometric", choices=["YBR_FULL_422", "MONOCHROME2"],
                   default="YBR_FULL_422")
    p.add_argument("--ecg", action=argparse.BooleanOptionalAction, default=True,
                   help="a green ECG trace (non-neutral chroma; YBR only)")
    p.add_argument("--quality", type=int, default=85, help="JPEG quality")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a run is hung")
    args = p.parse_args()
    h, w, t = args.height, args.width, args.frames
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dcm, manifest = folder / "big.dcm", folder / "manifest.csv"
        tic = time.perf_counter()
        write_dicom(dcm, h, w, t, args.photometric, args.ecg, args.quality)
        written = time.perf_counter() - tic
        pd.DataFrame({"path": [str(dcm)], "study_id": ["S0"], "split": ["train"],
                      "lvh": [0]}).to_csv(manifest, index=False)
        base = run_child([sys.executable, "-c", "import echoclr.cli, echoclr.commands.ingest"],
                         folder / "baseline.log", args.timeout)
        if base["rc"]:
            sys.exit(f"baseline import failed:\n{base['log']}")
        runs = []
        for k in sorted({t, min(args.max_frames, t)}, reverse=True):
            cache = folder / f"cache_{k}"
            cmd = [sys.executable, "-m", "echoclr", "ingest", str(manifest), "--out", str(cache),
                   "--size", str(args.size), "--max-frames", str(k), "--workers", "1",
                   "--salt", "bench"]
            run = run_child(cmd, folder / f"ingest_{k}.log", args.timeout)
            check_cache(cache, run, cmd)
            runs.append((k, run))
        file_mb = dcm.stat().st_size / 1e6
    ecg = args.ecg and args.photometric == "YBR_FULL_422"
    colour = args.photometric + (" + ECG" if ecg else "")
    print(f"one JPEG-baseline {colour} DICOM, {t} frames of {w}x{h}, quality {args.quality}: "
          f"{file_mb:.1f} MB (written in {written:.1f} s); decoded gray T·H·W "
          f"{t * h * w / MIB:.0f} MiB, RGB {3 * t * h * w / MIB:.0f} MiB")
    print(f"ingest --size {args.size} --workers 1; baseline (import only) peak RSS "
          f"{base['rss']:.0f} MiB; GRAY_BUDGET {GRAY_BUDGET / MIB:.0f} MiB; "
          f"{machine_description()}")
    print(f"{'max-frames':>10} {'T_read':>6} {'path':>8} {'gray MiB':>8} {'seconds':>7} "
          f"{'peak RSS':>8} {'increment':>9} {'bound':>6}  within")
    for k, run in runs:
        t_read = min(t, k)  # no --target-fps: the first max_frames frames, none repeated
        path = "held" if t_read * h * w <= GRAY_BUDGET else "two-pass"
        bound = (min(t_read * h * w, GRAY_BUDGET) + FAN_BYTES_PER_PIXEL * h * w
                 + RESIZE_BYTES) / MIB
        inc = run["rss"] - base["rss"]
        print(f"{k:10d} {t_read:6d} {path:>8} {t_read * h * w / MIB:8.0f} {run['wall']:7.1f} "
              f"{run['rss']:8.0f} {inc:9.0f} {bound:6.0f}  "
              f"{'yes' if inc <= bound else f'NO ({inc / bound:.2f}x the bound)'}")
    print("(MiB; bound = min(T_read·H·W, GRAY_BUDGET) + 40·H·W + 3·CHUNK_BYTES, reduce.py's "
          "docstring; "
          "increment = peak RSS - baseline)")


if __name__ == "__main__":
    main()
