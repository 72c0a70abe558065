"""Helpers shared by the benchmark scripts: per-step timing (median [min–max] of rates) and a
small synthetic cache."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.synth import synthesize
from echoclr.synth.cohort import SynthConfig


def summary(values, unit: str) -> str:
    """``median unit [min-max]`` of a list of rates."""
    return f"{statistics.median(values):7.1f} {unit} [{min(values):.1f}-{max(values):.1f}]"


def rate(times, clips: int) -> str:
    """Clips/s summary of per-step times for steps of ``clips`` clips."""
    return summary([clips / t for t in times], "clips/s")


def run_steps(loader, step_fn, steps: int) -> list[float]:
    """Time each of ``steps`` iterations (after one warm-up) of load + step; restarts the loader
    when it runs out."""
    times, it = [], iter(loader)
    step_fn(next(it))
    for _ in range(steps):
        tic = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        step_fn(batch)
        times.append(time.perf_counter() - tic)
    return times


def synthetic_cache(folder: str | Path, *, patients: int, size: int, workers: int) -> Path:
    """Synthesize ``patients`` studies (60-100 frames, AVI only) and ingest them at ``size`` px
    into ``folder/cache``; returns the cache folder."""
    folder = Path(folder)
    cohort = synthesize(SynthConfig(out=str(folder / "cohort"), patients=patients, size=size,
                                    frames_min=60, frames_max=100, dicom_fraction=0.0,
                                    lossless=False))
    ingest(IngestConfig(manifest=str(cohort), out=str(folder / "cache"), size=size,
                        workers=workers))
    return folder / "cache"
