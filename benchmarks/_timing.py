"""Timing helpers shared by the benchmark scripts (median [min–max] of per-step rates)."""

from __future__ import annotations

import statistics
import time


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
