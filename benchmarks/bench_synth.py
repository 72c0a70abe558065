"""Throughput of the synthetic cohort writer: videos per minute and disk per video.

Usage: PYTHONPATH=src python benchmarks/bench_synth.py [--patients 20] [--sizes 112 48]
       [--workers 1 2] [--mjpeg]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from echoclr.commands.synth import synthesize
from echoclr.synth.cohort import SynthConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 48])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mjpeg", action="store_true", help="MJPG q2 instead of FFV1")
    args = parser.parse_args()
    for size in args.sizes:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as out:
                cfg = SynthConfig(out=out, patients=args.patients, size=size, workers=workers,
                                  lossless=not args.mjpeg)
                start = time.perf_counter()
                manifest = synthesize(cfg)
                seconds = time.perf_counter() - start
                df = pd.read_csv(manifest)
                mib = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 2**20
                frames = df.n_frames.sum()
                print(f"size {size:3d}  workers {workers}: {len(df)} videos ({frames} frames) "
                      f"in {seconds:5.1f} s = {60 * len(df) / seconds:6.0f} videos/min, "
                      f"{frames / seconds:5.0f} frames/s, {1024 * mib / len(df):4.0f} KiB/video",
                      flush=True)


if __name__ == "__main__":
    main()
