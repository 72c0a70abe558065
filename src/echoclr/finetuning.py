"""One fine-tuning step and epoch, as in Holste et al. 2024: class-weighted BCE on smoothed
targets, Adam with the head at ``lr`` and the encoder at ``lr * encoder_lr_scale``, head-only
epochs or a linear probe with the encoder frozen, and early stopping after exactly ``patience``
epochs without a better validation measure (the loss, or the AUROC negated) counted from
``min_epochs`` on; the validation pass after an epoch; the checkpoint a killed run resumes from.

``cfg`` is the finetune command's config (:class:`echoclr.commands.finetune.FinetuneConfig`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from echoclr.data.transforms import augment_clips, minmax_scale, to_model_input
from echoclr.errors import UserError
from echoclr.inference import class_probabilities, predict_video_classes, predict_videos
from echoclr.losses import smoothed_bce, smoothed_ce
from echoclr.metrics import aggregate_by_study
from echoclr.models import Classifier
from echoclr.runs import autocast
from echoclr.step_guard import StepGuard
from echoclr.view_model import macro_auroc
from echoclr.weights import atomic_torch_save, load_weights


class EarlyStopping:
    """Stops after exactly ``patience`` epochs without a lower validation measure (lower is
    better: a loss, or an AUROC negated), counting from epoch ``start`` on.

    Epochs before ``start`` are never kept and never count against patience: on a validation
    split of a few dozen studies an untrained network's AUROC can be a fluke (0.69 after one
    epoch of a random init, 0.46 on test), and keeping it would end the run with nothing learned.
    """

    def __init__(self, patience: int, start: int = 0):
        self.patience, self.start = patience, start
        self.best, self.best_epoch, self.bad_epochs = math.inf, -1, 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch; True when it is the best so far (NaN, or an epoch before ``start``,
        never is)."""
        if epoch < self.start:
            return False
        if value < self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = (state["best"], state["best_epoch"],
                                                       state["bad_epochs"])


def param_groups(model: Classifier, cfg, *, frozen: bool) -> list[dict]:
    """Adam's parameter groups: the head at ``lr``; unless ``frozen``, the encoder at
    ``lr * encoder_lr_scale``."""
    head = {"params": list(model.head_parameters()), "lr": cfg.lr}
    if frozen:
        return [head]
    return [head, {"params": model.encoder_parameters(), "lr": cfg.lr * cfg.encoder_lr_scale}]


def train_step(model: Classifier, optimizer, batch: dict, cfg, *, device: torch.device,
               pos_weight: float, generator: torch.Generator, frozen: bool = False,
               class_weight: torch.Tensor | None = None, guard: StepGuard | None = None
               ) -> float:
    """One optimizer step on a batch {"clip": uint8 (B, T, H, W), "label": (B,)}; returns the loss.

    ``guard``: skips the update when the loss or a gradient is not finite (see
    :mod:`echoclr.step_guard`); without it the step is taken as is.

    ``frozen``: the encoder runs without gradients (linear probe / head-only epochs).
    ``class_weight``: (K,) for a multi-class model (labels are class indices): the loss is
    :func:`~echoclr.losses.smoothed_ce`, else :func:`~echoclr.losses.smoothed_bce`.
    """
    clips = minmax_scale(batch["clip"].to(device))
    if cfg.augment:
        clips = augment_clips(clips, generator=generator)
    if guard is not None:
        guard.before_forward()
    with autocast(device, cfg.precision):
        x = to_model_input(clips)
        logits = model.forward_frozen(x) if frozen else model(x)
    labels = batch["label"].to(device)
    if class_weight is not None:
        loss = smoothed_ce(logits, labels, class_weight=class_weight,
                           smoothing=cfg.label_smoothing)
    else:
        loss = smoothed_bce(logits, labels, pos_weight=pos_weight, smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if guard is None:
        optimizer.step()
    else:
        guard.step(optimizer, loss)
    return loss.item()


def train_one_epoch(model: Classifier, optimizer, loader: DataLoader, cfg, *, step: int,
                    device: torch.device, pos_weight: float, generator: torch.Generator,
                    frozen: bool, on_step=None, class_weight: torch.Tensor | None = None,
                    guard: StepGuard | None = None) -> tuple[list[float], int]:
    """One pass over ``loader`` (or up to ``cfg.max_steps`` steps in all, counting ``step``
    done before); ``frozen`` keeps the encoder and its BatchNorm statistics fixed.

    Returns:
        the training loss of each step, and the step count reached.
    """
    if frozen:
        model.train_head()
    else:
        model.train()
    losses = []
    for batch in loader:
        losses.append(train_step(model, optimizer, batch, cfg, device=device,
                                 pos_weight=pos_weight, generator=generator, frozen=frozen,
                                 class_weight=class_weight, guard=guard))
        step += 1
        if on_step is not None:
            on_step()
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return losses, step


# --- resume ------------------------------------------------------------------------------------
# RUN/checkpoint.pt, written after every epoch, holds everything the next epoch depends on; the
# data order and augmentation come from the loader's generator and the clips from (seed, epoch,
# index), so a resumed run ends with the weights of an uninterrupted one.
CHECKPOINT = "checkpoint.pt"
NOT_RESUMED = ("resume", "progress", "workers", "device")  # settings that may change on resume


def resume_settings(cfg) -> dict:
    """The settings a checkpoint must have been written with to be resumed under ``cfg``."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESUMED}


def save_checkpoint(path: Path, *, model: Classifier, optimizer, epoch: int, step: int,
                    stopper: EarlyStopping, best_state: dict | None,
                    generator: torch.Generator, settings: dict,
                    guard: dict | None = None) -> None:
    """Write the state after the finished ``epoch`` (atomically: a kill leaves the last one);
    ``guard``: the step guard's counters (:meth:`echoclr.step_guard.StepGuard.state_dict`)."""
    rng = {"cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "epoch": epoch, "step": step, "stopper": stopper.state_dict(),
                       "best_state": best_state, "rng": rng, "settings": settings,
                       "guard": guard}, path)


def load_checkpoint(path: Path, *, settings: dict, generator: torch.Generator) -> dict:
    """Read a checkpoint and restore the random state it holds (global and ``generator``).

    Raises:
        UserError: naming the settings that differ from the checkpoint's.
    """
    state = load_weights(path)
    differ = {k: (state["settings"].get(k), v) for k, v in settings.items()
              if state["settings"].get(k) != v}
    if differ:
        listed = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in differ.items())
        raise UserError(f"{path}: written with other settings ({listed}); --resume with the "
                        "same settings, or start afresh without --resume")
    torch.set_rng_state(state["rng"]["cpu"])
    generator.set_state(state["rng"]["generator"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


def validate(model, cache, val, cfg, device, pos_weight, classes=None,
             class_weight=None) -> tuple[float, float]:
    """Validation loss (per video, clip-averaged logits) and study-level AUROC; for a
    multi-class task the loss of the clip-averaged probabilities and the video-level macro
    one-vs-rest AUROC."""
    if classes is not None:
        return validate_classes(model, cache, val, cfg, device, classes, class_weight)
    pred = predict_videos(model, cache, val, label=cfg.task, clip_len=cfg.clip_len,
                          period=cfg.period, clips=cfg.val_clips, device=device,
                          precision=cfg.precision)
    if pred["y_score"].isna().any():  # diverged: neither a loss nor an AUROC to speak of
        return float("nan"), float("nan")
    p = torch.tensor(pred["y_score"].to_numpy()).clamp(1e-6, 1 - 1e-6)
    loss = smoothed_bce(torch.logit(p), torch.tensor(pred["y_true"].to_numpy()),
                        pos_weight=pos_weight, smoothing=cfg.label_smoothing).item()
    study = aggregate_by_study(pred)
    auroc = roc_auc_score(study["y_true"], study["y_score"]) if study["y_true"].nunique() > 1 \
        else float("nan")
    return loss, auroc


def validate_classes(model, cache, val, cfg, device, classes, class_weight
                     ) -> tuple[float, float]:
    pred = predict_video_classes(model, cache, val, classes=classes, clip_len=cfg.clip_len,
                                 period=cfg.period, clips=cfg.val_clips, device=device,
                                 precision=cfg.precision)
    proba = class_probabilities(pred, classes)
    if not np.isfinite(proba).all():  # diverged
        return float("nan"), float("nan")
    log_p = torch.log(torch.tensor(proba).clamp_min(1e-6))  # log-softmax of the averaged model
    y = torch.tensor(pred["y_true"].to_numpy())
    loss = smoothed_ce(log_p, y, class_weight=class_weight, smoothing=cfg.label_smoothing).item()
    return loss, macro_auroc(pred["y_true"].to_numpy(), proba)
