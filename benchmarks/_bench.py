"""Helpers shared by the benchmark scripts: per-step timing (median [min–max] of rates) and a
small synthetic cache."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import echoclr

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


# A small go-between that forks, execs the command and writes its ru_maxrss (KiB) to a file:
# a command exec'd straight from this process (vfork/fork + exec) would report this process's
# own peak RSS (torch, pandas: hundreds of MiB) as its ru_maxrss, since Linux folds the
# pre-exec memory's high-water mark in; forked from a ~10 MiB process it reports its own.
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_with_peak_rss(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run ``cmd`` (with this checkout's src/ on PYTHONPATH) under RSS_WRAPPER: {"rc": exit
    status, or a string when it hung past ``timeout`` s and was killed with its process group,
    "wall": seconds, "rss": peak RSS MiB, "log": its stdout and stderr}."""
    src = str(Path(echoclr.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p))
    rss = log.with_suffix(".maxrss")
    with open(log, "wb") as f:
        tic = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", RSS_WRAPPER, str(rss), *cmd],
                                env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)  # a group of its own, to kill a hang
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = f"hung (killed after {timeout:.0f} s)"
        wall = time.perf_counter() - tic
    return {"rc": rc, "wall": wall,
            "rss": int(rss.read_text()) / 1024 if rss.is_file() else 0.0,  # Linux: KiB
            "log": log.read_text(errors="replace")}
