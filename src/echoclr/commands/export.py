"""``echoclr export``: a fine-tuned classifier as TorchScript or ONNX, checked against PyTorch.

The exported graph takes float (B, 3, T, H, W) clips already preprocessed and scaled (see the
JSON sidecar) and returns probabilities (B,); the batch axis is dynamic. Averaging clips into
videos and videos into studies stays with the caller, as in ``predict``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from echoclr.atomic import atomic_path
from echoclr.data.preprocess import Preprocessing, preprocessing_of
from echoclr.errors import UserError
from echoclr.options import model_opt, opt
from echoclr.valid_json import write_json
from echoclr.weights import load_classifier, require_binary

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


@dataclass(frozen=True)
class ExportConfig:
    model: str = model_opt()
    format: str = opt("torchscript", "Output format: torchscript or onnx.")
    out: str = opt("model.ts", "Exported file; model.onnx when the format is onnx and this is "
                               "left as is.")
    tolerance: float = opt(1e-4, "Largest probability difference from PyTorch the parity check "
                                 "accepts.")
    seed: int = opt(0, "Seed of the random clips of the parity check.")


class ProbabilityModel(nn.Module):
    """The classifier followed by a sigmoid: float (B, 3, T, H, W) in [0, 1] → (B,)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(clips))


def export_torchscript(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    """Trace and save; the trace is checked by :func:`export`'s parity run instead of torch's
    own ``check_trace`` (which re-traces and costs seconds)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated",
                                category=FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(out))


def export_onnx(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    """ONNX at :data:`ONNX_OPSET` with a dynamic batch axis, validated by ``onnx.checker``.

    The TorchScript-based exporter (``dynamo=False``) is used: the torch.export-based one needs
    onnxscript, which echoclr does not install.
    """
    import onnx

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(model, (example,), str(out), input_names=["clips"],
                          output_names=["probability"], opset_version=ONNX_OPSET,
                          dynamic_axes={"clips": {0: "batch"}, "probability": {0: "batch"}},
                          dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))


def run_exported(path: str | Path, fmt: str, clips: torch.Tensor) -> np.ndarray:
    """Probabilities (B,) from an exported file: TorchScript reloaded, or onnxruntime (CPU)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated",
                                    category=FutureWarning)
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return loaded(clips).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probability"], {"clips": clips.numpy()})[0]


def export(cfg: ExportConfig) -> Path:
    """Export, then check parity on random clips of another batch size than the trace's.

    Prints and records (sidecar ``<out>.json``, ``parity``) the largest absolute difference of
    probabilities between the exported model and PyTorch; returns the exported file.

    Raises:
        UserError: an unknown format.
        RuntimeError: the difference exceeds ``cfg.tolerance`` (the file is removed).
    """
    if cfg.format not in FORMATS:
        raise UserError(f"--format {cfg.format}: unknown export format {cfg.format!r}; choose from {FORMATS}")
    model, meta = load_classifier(cfg.model)
    require_binary(meta, cfg.model, "export")
    prep = preprocessing_of(meta, cfg.model)
    wrapper = ProbabilityModel(model.float().to("cpu")).eval()
    out = Path("model.onnx" if cfg.format == "onnx" and cfg.out == "model.ts" else cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shape = (3, meta["clip_len"], prep.size, prep.size)  # one clip
    g = torch.Generator().manual_seed(cfg.seed)
    example, check = torch.rand(2, *shape, generator=g), torch.rand(3, *shape, generator=g)
    with atomic_path(out) as tmp:  # renamed to ``out`` only when the parity check passes
        (export_torchscript if cfg.format == "torchscript" else export_onnx)(wrapper, example, tmp)
        got = run_exported(tmp, cfg.format, check)
        with torch.no_grad():
            expected = wrapper(check).numpy()
        diff = float(np.abs(got - expected).max())
        if not diff <= cfg.tolerance:  # NaN fails too
            raise RuntimeError(
                f"{out}: exported {cfg.format} model differs from PyTorch by up to {diff:.3g} in "
                f"probability, over the tolerance {cfg.tolerance:g}; not written")
    _write_sidecar(out, cfg, meta, prep, shape, diff)
    print(f"{out}: max |probability difference| vs PyTorch {diff:.2e} "
          f"(tolerance {cfg.tolerance:g}, {len(check)} random clips)")
    return out


def _write_sidecar(out: Path, cfg: ExportConfig, meta: dict, prep: Preprocessing, shape: tuple,
                   diff: float) -> None:
    info = {
        "format": cfg.format, "file": out.name, "task": meta["task"],
        "encoder": meta["encoder"], "source_model": str(cfg.model),
        "input": {"name": "clips", "shape": ["batch", *shape], "dtype": "float32",
                  "layout": "(B, C, T, H, W)",
                  "values": "grayscale frames repeated to 3 channels, each clip min-max scaled "
                            "over all its pixels to [0, 1]"},
        "output": {"name": "probability", "shape": ["batch"],
                   "values": "sigmoid of the logit, per clip"},
        "clip_len": meta["clip_len"], "period": meta["period"], "eval_clips": meta["eval_clips"],
        "aggregation": "mean over eval_clips evenly spaced clips per video, then mean over a "
                       "study's videos (echoclr.commands.predict)",
        "preprocessing": prep.to_dict(),
        "opset": ONNX_OPSET if cfg.format == "onnx" else None, "torch": torch.__version__,
        "parity": {"max_abs_diff": diff, "tolerance": cfg.tolerance, "batch": 3,
                   "reference": "PyTorch fp32 on CPU",
                   "runtime": "onnxruntime CPU" if cfg.format == "onnx" else "torch.jit.load"},
    }
    write_json(out.with_name(out.name + ".json"), info, default=str)
