"""Run folders: resolved config, JSON-lines log, seeding, precision and the device."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from echoclr.atomic import atomic_write_text
from echoclr.errors import UserError
from echoclr.valid_json import json_text, write_json
from echoclr.weights import file_sha256


# A run folder holds the outputs of one model. Files derived from the model carry its
# fingerprint (the SHA-256 of model.pt) in a JSON sidecar: readers that may reuse them recompute
# them when it is not the current model's, readers that cannot (compare) refuse them; writing a
# new model clears them, in the run folder and in its split subfolders (RUN/test …).
VAL_STUDIES = "val_study_predictions.csv"  # evaluate's validation studies (its threshold)
STUDY_PREDICTIONS = "study_predictions.csv"  # evaluate's study scores (compare reads them)
EVALUATION_OUTPUTS = ("predictions.csv", STUDY_PREDICTIONS, "metrics.json", "roc.png", "pr.png",
                      "calibration.png", "confusion.png")  # what evaluate writes
MODEL_DERIVED = (VAL_STUDIES, *EVALUATION_OUTPUTS)


def clear_model_outputs(run_dir: str | Path) -> None:
    """Remove what a run folder holds derived from its previous model (and the sidecars), in
    the folder and in each subfolder without a model of its own (evaluate's ``--out RUN/test``);
    a subfolder left empty goes too."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    subfolders = [d for d in run_dir.iterdir() if d.is_dir() and not (d / "model.pt").exists()]
    for folder in (run_dir, *subfolders):
        for name in MODEL_DERIVED:
            path = folder / name
            path.unlink(missing_ok=True)
            if path.suffix == ".csv":
                path.with_suffix(".json").unlink(missing_ok=True)
        if folder != run_dir and not any(folder.iterdir()):
            folder.rmdir()


def model_stamp(model: str | Path, folder: str | Path) -> dict:
    """What an output written into ``folder`` from ``model`` (a model.pt) carries: the model's
    fingerprint and its path relative to ``folder``."""
    return {"model_sha256": file_sha256(model), "model": os.path.relpath(model, folder)}


def read_current(path: str | Path) -> str:
    """The text of a model-derived file (e.g. ``study_predictions.csv``) whose sidecar's
    fingerprint is that of the model it names, as that model is now.

    Raises:
        UserError: the file is absent, carries no fingerprint, or comes from another model;
            naming the file and the evaluate command that writes it anew.
    """
    path = Path(path)
    side = path.with_suffix(".json")
    stamp = json.loads(side.read_text()) if side.is_file() else {}
    folder = path.parent
    if "model" in stamp:
        model = folder / stamp["model"]
    else:  # a run folder, or a split subfolder of one (RUN/test)
        model = next((m for m in (folder / "model.pt", folder.parent / "model.pt")
                      if m.is_file()), folder / "model.pt")
    run = model.parent
    again = f"echoclr evaluate {run}" + ("" if folder.resolve() == run.resolve() else
                                         f" --split {stamp.get('split', folder.name)} "
                                         f"--out {folder}")
    if not path.is_file():
        raise UserError(f"{path}: not found; run `{again}` first")
    if "model_sha256" not in stamp:
        raise UserError(f"{path}: carries no model fingerprint ({side.name} is missing), so it "
                        f"may come from another model than {model}; re-run {again}")
    if not model.is_file() or file_sha256(model) != stamp["model_sha256"]:
        now = "is gone" if not model.is_file() else "has been replaced since"
        raise UserError(f"{path}: written from another model: {model} {now}; re-run {again}")
    return path.read_text()


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


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The first ``model name`` ("unknown CPU" without one) and ``flags`` of /proc/cpuinfo."""
    model, flags = "unknown CPU", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
        if key.strip() == "flags" and flags is None:
            flags = frozenset(value.split())
    return model, flags or frozenset()


@functools.lru_cache(maxsize=1)  # autocast() asks on every step: read /proc/cpuinfo once
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """This CPU's model name and flags (Linux; "unknown CPU" and none elsewhere)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return "unknown CPU", frozenset()


def cpu_bf16_kind(cpuinfo: str | None = None) -> str | None:
    """How this CPU runs bf16: "amx" (AMX-bf16), "avx512" (AVX512-bf16 only) or None (emulated:
    measured 9 vs 187 clips/s against fp32 for r3d_tiny training on an AVX2-only EPYC).

    Args:
        cpuinfo: the text of a /proc/cpuinfo; None: this machine's.
    """
    flags = (cpu_model_and_flags() if cpuinfo is None else parse_cpuinfo(cpuinfo))[1]
    return "amx" if "amx_bf16" in flags else "avx512" if "avx512_bf16" in flags else None


# oneDNN ISA caps (the ONEDNN_MAX_CPU_ISA environment variable) below AVX512: oneDNN then runs
# its AVX2 kernels, whose bf16 Conv3d weight gradients were sound on the AVX512-bf16 EPYC
# (none of 30 calls per layer shape and layout wrong, median error 1.4 %, where the uncapped
# 16->16 conv was wrong or inf/NaN in all 30: benchmarks/bench_bf16_faults.py), 12x slower.
AVX2_ISAS = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"})


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is capped to by ONEDNN_MAX_CPU_ISA (or its old name), None if uncapped."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return isa.upper() if isa and isa.upper() != "ALL" else None


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX-bf16 or AVX512-bf16 instructions (bf16 not emulated)."""
    return cpu_bf16_kind() is not None


def machine_description() -> str:
    """The CPU (model name, core count, bf16 support) and torch version, for reports: figures
    and numerics depend on it (bf16 is fast only with AMX/AVX512-bf16)."""
    model, flags = cpu_model_and_flags()
    kinds = [f for f in ("amx_bf16", "avx512_bf16", "avx2") if f in flags]
    simd = ", ".join(kinds) if kinds else "no AVX2"
    bf16 = {"amx": "bf16 fast", "avx512": "bf16 via AVX512, auto picks fp32"}.get(
        cpu_bf16_kind(), "bf16 emulated")
    cap = onednn_isa_cap()
    return (f"{model} ({simd}; {bf16}), {os.cpu_count()} CPUs, torch {torch.__version__}"
            + (f", ONEDNN_MAX_CPU_ISA={cap}" if cap else "")
            + (f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))


BF16_UNSOUND = ("bf16 on a CPU with AVX512-bf16 but no AMX: here oneDNN's bf16 Conv3d weight "
                "gradient was measured inf/NaN or wrong (run benchmarks/bench_bf16_faults.py); "
                "non-finite steps are skipped, wrong finite ones cannot be seen: prefer "
                "--precision fp32 (or ONEDNN_MAX_CPU_ISA=AVX2 in the environment: sound bf16, "
                "about 12x slower)")


@functools.cache
def warn_bf16_unsound() -> None:
    """:data:`BF16_UNSOUND`, once a process (every stage resolves its precision)."""
    warnings.warn(BF16_UNSOUND, stacklevel=3)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the hardware runs it fast and sound (CUDA with bf16, AMX CPUs),
    else fp32.

    Not on a CPU with AVX512-bf16 but no AMX: there oneDNN's bf16 Conv3d weight gradient came
    back inf/NaN in 88 of 400 calls (AMD EPYC, torch 2.14.1; :mod:`echoclr.step_guard`), for
    1.5x the fp32 speed (benchmarks/bench_precision.py). ``--precision bf16`` still runs it,
    with a warning unless oneDNN is capped to its AVX2 kernels (:data:`AVX2_ISAS`).
    """
    if (precision == "bf16" and device.type == "cpu" and cpu_bf16_kind() == "avx512"
            and onednn_isa_cap() not in AVX2_ISAS):
        warn_bf16_unsound()
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_bf16_kind() == "amx" else "fp32"


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
