"""Run folders: resolved config, JSON-lines log, seeding, precision and the device."""

from __future__ import annotations

import contextlib
import functools
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from echoclr.atomic import atomic_write_text
from echoclr.errors import UserError
from echoclr.valid_json import json_text, write_json


# A run folder holds the outputs of one model. Files derived from the model that a later command
# may reuse carry its fingerprint (the SHA-256 of model.pt) in a JSON sidecar, and their readers
# recompute them when it is not the current model's; writing a new model clears them too.
VAL_STUDIES = "val_study_predictions.csv"  # evaluate's validation studies (its threshold)
MODEL_DERIVED = (VAL_STUDIES,)


def clear_model_outputs(run_dir: str | Path) -> None:
    """Remove what a run folder holds derived from its previous model (and their sidecars)."""
    for name in MODEL_DERIVED:
        path = Path(run_dir) / name
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)


def read_derived(path: str | Path, key: dict) -> str | None:
    """The text of a model-derived file whose sidecar holds exactly ``key`` (the model's
    fingerprint and the settings it was made with), else None (absent, or another model's)."""
    path = Path(path)
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()) or json.loads(side.read_text()) != key:
        return None
    return path.read_text()


def write_derived(path: str | Path, text: str, key: dict) -> None:
    """Write a model-derived file and its sidecar ``key`` (for :func:`read_derived`)."""
    path = Path(path)
    atomic_write_text(path, text)
    write_json(path.with_suffix(".json"), key)


def write_config(cfg, run_dir: str | Path, extra: dict | None = None) -> dict:
    """Write ``config.json`` (the resolved dataclass plus ``extra``) and return it as a dict."""
    data = dataclasses.asdict(cfg) | (extra or {})
    write_json(Path(run_dir) / "config.json", data, default=str)
    return data


class JsonlLog:
    """Append-only JSON-lines log; ``rows()`` reads it back (for plots and resume)."""

    def __init__(self, path: str | Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def write(self, **row) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json_text({"time": round(time.time(), 3)} | row, indent=None) + "\n")

    def rows(self) -> list[dict]:
        """Logged rows; a torn last line (the writer died mid-append, or the disk filled) is
        dropped, so a resumed run re-logs that step instead of failing to read the log. A value
        written as null (it was not a number) reads back as NaN."""
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text().splitlines() if line.strip()]
        rows = []
        for k, line in enumerate(lines):
            try:
                rows.append({key: math.nan if value is None else value
                             for key, value in json.loads(line).items()})
            except json.JSONDecodeError:
                if k < len(lines) - 1:  # damage before the end is not a torn append: say so
                    raise ValueError(f"{self.path}: line {k + 1} is not JSON: {line[:80]!r}")
        return rows

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run re-logs them)."""
        if self.enabled and self.path.is_file():
            keep = [r for r in self.rows() if r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json_text(r, indent=None) + "\n" for r in keep))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=1)  # autocast() asks on every step: read /proc/cpuinfo once
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX-bf16 or AVX512-bf16 instructions (Linux /proc/cpuinfo flags).

    Without them oneDNN emulates bf16 and autocast is far slower than fp32: measured 9 vs 187
    clips/s for r3d_tiny training on an AVX2-only EPYC (benchmarks/bench_precision.py).
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware runs it fast (CUDA with bf16, AMX CPUs), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CPU or GPU; a no-op for fp32 (``auto`` is resolved first)."""
    precision = resolve_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision must be bf16 or fp32, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def pick_device(name: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """The device a process runs on, picked once: ``auto`` is CUDA when available, else the CPU.

    Under torchrun (``local_rank`` given, see :func:`echoclr.distributed.torchrun_local_rank`)
    a CUDA device without an index is this process's own GPU, ``cuda:LOCAL_RANK``; an explicit
    index is kept.

    Raises:
        UserError: for a device this process does not have (``cuda`` without a GPU).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name}: not a device ({err}); use auto, cpu, cuda or "
                        "cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available to this process "
                        "(torch.cuda.is_available() is False); use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                        "GPU(s), numbered from cuda:0")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device
