"""A tiny fine-tuned model on disk (model.pt + model.json as ``finetune`` writes them), built
directly from a seeded r3d_tiny so the predict/saliency/embed/export tests need no training."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from echoclr.models import Classifier, build_encoder

# What `ingest` writes to ingest_config.json and `finetune` copies into model.json.
PREPROCESSING = {"size": 16, "max_frames": 100, "min_fps": 25.0, "target_fps": None,
                 "salted": False, "preprocessing": {"version": 1, "size": 16, "max_frames": 100}}


def tiny_classifier(*, width: int = 4, seed: int = 0) -> Classifier:
    """A seeded r3d_tiny classifier in eval mode, with BatchNorm statistics that are not the
    identity (so export and features exercise them) and a head that spreads probabilities."""
    torch.manual_seed(seed)
    model = Classifier(build_encoder("r3d_tiny", width=width))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    return model.eval()


def write_tiny_model(folder: str | Path, *, model: Classifier | None = None, width: int = 4,
                     clip_len: int = 4, period: int = 1, eval_clips: int = 2,
                     preprocessing: dict | None = None, task: str = "lvh") -> Path:
    """Write ``folder/model.pt`` + ``folder/model.json``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else tiny_classifier(width=width)
    torch.save(model.state_dict(), folder / "model.pt")
    meta = {"encoder": "r3d_tiny", "width": width, "task": task, "init": "random",
            "readout": "finetune", "view": None,
            "clip_len": clip_len, "period": period, "dropout": 0.25, "eval_clips": eval_clips,
            "preprocessing": preprocessing or PREPROCESSING, "cache": "",
            "best_epoch": 0, "best_val_loss": 0.5, "finetune_config": {"view": None}}
    (folder / "model.json").write_text(json.dumps(meta, indent=2))
    return folder


class SimulatedCrash(RuntimeError):
    """A fine-tuning run killed between epochs (see :func:`crash_after_epoch`)."""


def crash_after_epoch(cfg, monkeypatch, epoch: int) -> None:
    """Run ``finetune(cfg)`` until the checkpoint of ``epoch`` is written, then kill it; the
    run folder holds that checkpoint and no model, as a killed run leaves it."""
    import pytest

    import echoclr.commands.finetune as ft

    save = ft.save_checkpoint

    def crashing_save(path, **state):
        save(path, **state)
        if state["epoch"] == epoch:
            raise SimulatedCrash(f"killed after epoch {epoch}")

    monkeypatch.setattr(ft, "save_checkpoint", crashing_save)
    with pytest.raises(SimulatedCrash):
        ft.finetune(cfg)
    monkeypatch.setattr(ft, "save_checkpoint", save)
    assert not (Path(cfg.out) / "model.pt").exists()
