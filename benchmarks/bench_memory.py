"""Peak memory (RSS) of a pretraining run against the size of the cache it reads.

echoclr's datasets memory-map each cached ``.npy`` and copy out only a clip's frames, so a
process's resident memory should not grow with the number of cached videos. This runs the real
``python -m echoclr pretrain`` (fixed ``--steps``, ``--batch`` and ``--workers``) on caches of
``--videos`` videos each and samples the resident memory of its whole process tree (main process
+ data-loader workers) every ``--interval`` seconds, from ``/proc`` (or psutil where there is no
``/proc``). Per cache size it prints the peak RSS of the main process, the peak of the tree's
summed RSS, the peak of the tree's summed PSS (``/proc/PID/smaps_rollup``, Linux only; read every
``--pss-every`` samples as it is costly) and the wall time (from start to exit, imports
included), as median [min–max] over ``--repeats`` runs, then the ratio largest / smallest cache.

Summed RSS double-counts pages that several processes share: the forked workers' copy-on-write
pages of the parent (torch, the interpreter) and the mmap'd cache pages. PSS splits each shared
page between the processes that map it, so the summed PSS is the tree's real footprint.

The caches are not decoded from videos (synthesizing and ingesting 1,000 videos is slow): random
uint8 frames are written in ingest's exact cache layout (``videos/<key>.npy`` + ``<key>.json``
sidecars, and ``manifest.csv``, ``ingest_report.csv``, ``ingest_config.json`` written by ingest's
own writer), every video in the ``train`` split, ``--per-study`` PLAX videos per study.

    PYTHONPATH=src python benchmarks/bench_memory.py --videos 100 1000 --steps 20 --size 112 \\
        --frames 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

import echoclr
from echoclr.data.cache import VideoCache, video_key, write_cache_index
from echoclr.data.preprocess import Preprocessing

try:
    import psutil
except ImportError:
    psutil = None

PROC = Path("/proc")
HAS_PSS = (PROC / "self" / "smaps_rollup").is_file()  # Linux >= 4.14


def write_cache(root: Path, n_videos: int, *, frames: int, size: int, per_study: int = 3,
                fps: float = 30.0, seed: int = 0) -> VideoCache:
    """A cache of ``n_videos`` random uint8 (frames, size, size) videos in ingest's layout.

    Each video gets the ``.npy`` and ``.json`` sidecar ``process_video`` writes (random frames
    instead of a decoded video); the manifest, report and config come from ingest's writer.
    """
    rng = np.random.default_rng(seed)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({
        "path": [f"synthetic/video_{i:05d}.avi" for i in range(n_videos)],
        "study_id": [f"S{i // per_study:05d}" for i in range(n_videos)],
        "view": "PLAX", "split": "train",
        "lvh": rng.integers(0, 2, n_videos).astype(float),
    })
    df["patient_id"] = df["study_id"]
    records = {}
    for i, source in enumerate(df["path"]):
        key = root / "videos" / video_key(source)
        np.save(key.with_suffix(".npy"), rng.integers(0, 256, (frames, size, size), np.uint8))
        records[i] = {"n_frames": frames, "fps": fps, "source_fps": fps, "fps_from": "manifest",
                      "height": size, "width": size, "meta": {}, "preprocess": {}}
        key.with_suffix(".json").write_text(json.dumps(records[i], indent=1))
    prep = Preprocessing(size=size, max_frames=frames, min_fps=25.0, target_fps=None)
    write_cache_index(root, {"manifest": str(root / "source_manifest.csv"), "out": str(root)},
                      prep, df, records, skipped=[])
    cache = VideoCache(root)
    rows = cache.rows("train", "PLAX")
    assert len(rows) == n_videos and cache.open(rows["path"][0]).shape == (frames, size, size)
    return cache


def _proc_kib(pid: int, name: str, field: str) -> int:
    """A ``field:  N kB`` line of /proc/PID/NAME, in KiB (0 if the process is gone)."""
    try:
        for line in (PROC / str(pid) / name).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc/*/stat parent ids, or psutil)."""
    if psutil is not None and not PROC.is_dir():
        try:
            parent = psutil.Process(root)
            return [root] + [c.pid for c in parent.children(recursive=True)]
        except psutil.Error:
            return [root]
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name field may hold spaces
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_mib(pid: int) -> float:
    """Resident set size of one process, MiB (0 if it is gone)."""
    if psutil is not None and not PROC.is_dir():
        try:
            return psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0
    return _proc_kib(pid, "status", "VmRSS") / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size of one process, MiB (0 if it is gone, NaN without smaps_rollup).
    Costly: the kernel walks the page tables (~20 ms for a process that imported torch)."""
    return _proc_kib(pid, "smaps_rollup", "Pss") / 1024 if HAS_PSS else float("nan")


class Sampler(threading.Thread):
    """Polls a process tree's memory until stopped; keeps the peaks (MiB). RSS every
    ``interval`` seconds, PSS (costly) every ``pss_every`` samples."""

    def __init__(self, pid: int, interval: float, pss_every: int):
        super().__init__(daemon=True)
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak_main = self.peak_rss = self.peak_pss = 0.0
        self.max_procs, self.samples = 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            tic = time.perf_counter()
            tree = process_tree(self.pid)
            rss = [rss_mib(pid) for pid in tree]
            self.peak_main = max(self.peak_main, rss[0])
            self.peak_rss = max(self.peak_rss, sum(rss))
            if self.samples % self.pss_every == 0:
                pss = sum(pss_mib(pid) for pid in tree)
                self.peak_pss = max(self.peak_pss, pss) if HAS_PSS else pss
            self.max_procs, self.samples = max(self.max_procs, len(tree)), self.samples + 1
            self.stop.wait(max(0.0, self.interval - (time.perf_counter() - tic)))


def run_pretrain(cache: Path, out: Path, args) -> dict:
    """``python -m echoclr pretrain`` in a subprocess, sampled; peaks in MiB and wall time."""
    src = str(Path(echoclr.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "echoclr", "pretrain", str(cache), "--out", str(out),
           "--encoder", args.encoder, "--max-steps", str(args.steps),
           "--batch-size", str(args.batch), "--workers", str(args.workers),
           "--clip-len", "4", "--checkpoint-every", str(10**9), "--device", args.device,
           "--no-progress"]
    tic = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid, args.interval, args.pss_every)
    sampler.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - tic
    sampler.stop.set()
    sampler.join()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output.decode(errors='replace')}")
    return {"main": sampler.peak_main, "tree RSS": sampler.peak_rss, "tree PSS": sampler.peak_pss,
            "wall": wall, "procs": sampler.max_procs, "samples": sampler.samples}


def fmt(values, unit):
    return f"{statistics.median(values):7.1f} {unit} [{min(values):.1f}-{max(values):.1f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, nargs="+", default=[100, 1000], help="cache sizes")
    p.add_argument("--frames", type=int, default=32, help="frames per cached video")
    p.add_argument("--size", type=int, default=48, help="cached frame side, pixels")
    p.add_argument("--per-study", type=int, default=3, help="videos per study")
    p.add_argument("--encoder", default="r3d_tiny")
    p.add_argument("--steps", type=int, default=20, help="pretraining steps per run")
    p.add_argument("--batch", type=int, default=16, help="positive pairs per step")
    p.add_argument("--workers", type=int, default=2, help="data-loader processes")
    p.add_argument("--repeats", type=int, default=1, help="runs per cache size")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    p.add_argument("--pss-every", type=int, default=10, help="samples between PSS reads")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = p.parse_args()
    source = "/proc" if PROC.is_dir() else "psutil" if psutil else None
    if source is None:
        sys.exit("needs /proc (Linux) or psutil to read process memory")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.videos:
            root = Path(tmp) / f"cache_{n}"
            tic = time.perf_counter()
            write_cache(root, n, frames=args.frames, size=args.size, per_study=args.per_study)
            mib = sum(f.stat().st_size for f in (root / "videos").glob("*.npy")) / 2**20
            print(f"cache of {n} videos ({args.frames}x{args.size}x{args.size} uint8, {mib:.0f} MiB"
                  f" of .npy) written in {time.perf_counter() - tic:.1f} s")
            results[n] = [run_pretrain(root, Path(tmp) / f"run_{n}_{r}", args)
                          for r in range(args.repeats)]
        print(f"pretrain {args.encoder}, {args.steps} steps of {args.batch} pairs, "
              f"{args.workers} workers, device {args.device}; memory from {source} every "
              f"{args.interval * 1000:.0f} ms (PSS every {args.pss_every}); peaks in MiB, "
              f"median [min-max] of {args.repeats}")
        for n, runs in results.items():
            cols = " | ".join(f"{k} {fmt([r[k] for r in runs], 'MiB' if k != 'wall' else 's')}"
                              for k in ("main", "tree RSS", "tree PSS", "wall"))
            print(f"{n:6d} videos: {cols} | {max(r['procs'] for r in runs)} processes, "
                  f"{min(r['samples'] for r in runs)} samples")
        small, large = min(results), max(results)
        if small != large:
            def median(n, k):
                return statistics.median(r[k] for r in results[n])
            ratios = " | ".join(f"{k} {median(large, k) / median(small, k):.2f}x"
                                for k in ("main", "tree RSS", "tree PSS", "wall"))
            print(f"ratio {large} / {small} videos: {ratios}")


if __name__ == "__main__":
    main()
