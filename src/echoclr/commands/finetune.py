"""``echoclr finetune``: fine-tuning on a fraction of the labeled training studies.

The protocol of Holste et al. 2024: class-weighted BCE with label smoothing (applied, unlike the
paper's code), dropout 0.25 before the logit, Adam, early stopping on the validation loss after
exactly ``patience`` epochs without improvement with the best weights restored, strict loading of
pretrained encoders. The step and the epoch are :mod:`echoclr.finetuning`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from echoclr.data.cache import VideoCache
from echoclr.data.categorical import CLASS_COLUMN, readout_view, videos_per_class
from echoclr.data.datasets import ClipDataset
from echoclr.data.selection import select_task_rows, studies_fingerprint
from echoclr.errors import UserError
from echoclr.finetuning import (
    CHECKPOINT,
    EarlyStopping,
    load_checkpoint,
    param_groups,
    resume_settings,
    save_checkpoint,
    train_one_epoch,
    validate,
)
from echoclr.inits import check_init, init_encoder, start_from_probe
from echoclr.losses import balanced_class_weight
from echoclr.models import Classifier
from echoclr.options import (
    LabeledReadoutSetting,
    device_opt,
    opt,
    precision_opt,
    view_opt,
)
from echoclr.runs import (
    JsonlLog,
    clear_model_outputs,
    pick_device,
    resolve_precision,
    seed_everything,
    write_config,
)
from echoclr.step_guard import StepGuard
from echoclr.weights import save_classifier

SELECT_ON = ("val_loss", "val_auroc")


@dataclass(frozen=True)
class FinetuneConfig(LabeledReadoutSetting):
    out: str = opt("runs/finetune", "Run folder: config.json, log.jsonl, model.pt, model.json.")
    val_fraction: float = opt(1.0, "Share of the validation studies used (paper: all, even at "
                                   "1 %).")
    seed: int = opt(0, "Seed of new layers, clip draws, augmentation and dropout.")
    lr: float = opt(1e-4, "Adam learning rate (paper: 1e-4).")
    lr_grid: tuple[float, ...] = opt((), "Learning rates to try, one run each, keeping the one "
                                         "with the best validation AUROC; empty: just lr.")
    encoder_lr_scale: float = opt(1.0, "The encoder learns at lr times this; the head at lr.")
    head_init: str | None = opt(None, "Probe run folder whose logit layer starts this one's "
                                      "(LP-FT, Kumar et al. 2022); its init must be this run's.")
    head_epochs: int = opt(0, "Epochs that train the head alone before full fine-tuning.")
    linear_probe: bool = opt(False, "Freeze the encoder for the whole run.")
    epochs: int = opt(30, "Most epochs (paper: 30).")
    max_steps: int | None = opt(None, "Stop after this many optimizer steps in all; None: no "
                                      "limit.")
    patience: int = opt(5, "Epochs without a better validation measure before stopping.")
    min_epochs: int = opt(0, "Epochs always trained, and not validated, before one can be kept "
                             "as the best or count against patience (an untrained epoch's "
                             "validation AUROC can be a fluke on a small validation split).")
    select_on: str = opt("val_loss", "Validation measure that picks the best epoch and stops "
                                     "early: val_loss (paper) or val_auroc (study level; "
                                     "video-level macro AUROC for a multi-class task).")
    clip_len: int = opt(16, "Frames per clip (paper: 16).")
    period: int = opt(1, "Stride between the frames of a clip.")
    batch_size: int = opt(88, "Videos per optimizer step (paper: 88).")
    dropout: float = opt(0.25, "Dropout before the logit.")
    label_smoothing: float = opt(0.1, "Label smoothing s: targets become y(1 - s) + s/2.")
    augment: bool = opt(True, "Apply the paper's augmentation to training clips.")
    eval_clips: int = opt(4, "Evenly spaced clips per video at test time (paper: 4).")
    val_clips: int = opt(4, "Evenly spaced clips per video for the validation after each "
                            "epoch.")
    view: str | None = view_opt("PLAX")
    precision: str = precision_opt()
    workers: int = opt(2, "Data-loader processes.")
    device: str = device_opt()
    resume: bool = opt(False, "Continue a killed run from RUN/checkpoint.pt (its last finished "
                              "epoch), to the model an uninterrupted run ends with.")
    progress: bool = opt(True, "Show a progress bar.")


def build_classifier(cfg: FinetuneConfig, n_outputs: int = 1) -> tuple[Classifier, dict]:
    """The classifier with its encoder initialised as ``cfg.init`` says (strict loading), and
    the encoder's description (:func:`echoclr.inits.init_encoder`)."""
    encoder, meta = init_encoder(cfg.init, arch=cfg.encoder, width=cfg.width, weights=cfg.weights)
    return Classifier(encoder, dropout=cfg.dropout, n_outputs=n_outputs), meta


def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune (or, with ``lr_grid``, several runs and keep the best); returns the run folder."""
    if cfg.select_on not in SELECT_ON:
        raise UserError(f"--select-on {cfg.select_on!r}: choose from {SELECT_ON}")
    if not 0 <= cfg.min_epochs < cfg.epochs:
        raise UserError(f"--min-epochs {cfg.min_epochs}: must be at least 0 and below --epochs "
                        f"({cfg.epochs}), or no epoch could be kept")
    if cfg.lr_grid:
        clear_model_outputs(cfg.out)  # a new model: what was derived from the old one goes
        return _finetune_grid(cfg)
    out = Path(cfg.out)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    cache = VideoCache(cfg.cache)
    train, val, classes = select_task_rows(cache, task=cfg.task, fraction=cfg.fraction,
                                           fraction_seed=cfg.fraction_seed, view=cfg.view,
                                           val_fraction=cfg.val_fraction)
    if classes is None:
        labels = train.drop_duplicates("study_id")[cfg.task].astype(float)
        n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
        pos_weight, class_weight = n_neg / max(n_pos, 1), None
        counts = {"n_train_studies": n_pos + n_neg, "n_train_pos": n_pos,
                  "pos_weight": pos_weight}
    else:  # a categorical task: video labels, classes balanced in the loss
        pos_weight = 1.0
        class_weight = balanced_class_weight(torch.tensor(train[CLASS_COLUMN].to_numpy()),
                                             len(classes))
        counts = {"n_train_studies": int(train["study_id"].nunique()),
                  "n_train_per_class": videos_per_class(train, classes),
                  "class_weight": dict(zip(classes, class_weight.tolist()))}
    model, meta = build_classifier(cfg, n_outputs=len(classes) if classes else 1)
    check_init(cfg.init, meta, cache)
    if cfg.head_init:
        start_from_probe(model, init=cfg.init, head_init=cfg.head_init)
    model = model.to(device, memory_format=torch.channels_last_3d)
    clear_model_outputs(out)  # the inputs check out; a new model: the old one's outputs go
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out, {"encoder": meta["encoder"], "width": meta["width"],  # as resolved
                            **counts, "train_studies_sha256": studies_fingerprint(train),
                            "n_train_videos": len(train), "n_val_studies":
                            int(val["study_id"].nunique())})
    dataset = ClipDataset(cache, train, clip_len=cfg.clip_len, period=cfg.period,
                          label=cfg.task if classes is None else CLASS_COLUMN, seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    # Workers start afresh each epoch (not persistent): they see the epoch's clip draws
    # (set_epoch), and the generator is drawn from alike in every epoch, resumed or not.
    loader = DataLoader(dataset, batch_size=min(cfg.batch_size, len(dataset)), shuffle=True,
                        generator=g, num_workers=cfg.workers, drop_last=False)
    log = JsonlLog(out / "log.jsonl")
    if not (cfg.resume and (out / CHECKPOINT).is_file()):
        log.path.unlink(missing_ok=True)
        (out / CHECKPOINT).unlink(missing_ok=True)
    stopper, best_state = _train(cfg, model, dataset, loader, cache, val, log, device=device,
                                 pos_weight=pos_weight, generator=g, classes=classes,
                                 class_weight=class_weight)
    if best_state is None:  # NaN never beats inf: every validation loss was NaN
        raise RuntimeError(f"{out}: the validation loss was NaN in every epoch (training "
                           f"diverged); lower --lr (now {cfg.lr}) or check the inputs")
    model.load_state_dict(best_state)
    _save_model(model, cfg, meta, cache, out, stopper, classes)
    (out / CHECKPOINT).unlink(missing_ok=True)  # the model is written: nothing to resume
    return out


def _frozen(cfg: FinetuneConfig, epoch: int) -> bool:
    """Whether ``epoch`` trains the head alone."""
    return epoch < cfg.head_epochs or cfg.linear_probe


def _resume(cfg: FinetuneConfig, model: Classifier, stopper: EarlyStopping, log: JsonlLog,
            generator: torch.Generator, guard: StepGuard) -> tuple[int, int, dict | None, object]:
    """(first epoch, step, best state, optimizer) to continue from RUN/checkpoint.pt with
    ``--resume`` (and ``guard``'s counters restored); (0, 0, None, None) for a fresh run."""
    path = Path(cfg.out) / CHECKPOINT
    if not (cfg.resume and path.is_file()):
        return 0, 0, None, None
    state = load_checkpoint(path, settings=resume_settings(cfg), generator=generator)
    model.load_state_dict(state["model"])
    stopper.load_state_dict(state["stopper"])
    # The optimizer of the last finished epoch (head-only or whole model, as it was).
    optimizer = torch.optim.Adam(param_groups(model, cfg, frozen=_frozen(cfg, state["epoch"])))
    optimizer.load_state_dict(state["optimizer"])
    log.truncate_after(state["step"])
    guard.load_state_dict(state.get("guard"))
    return state["epoch"] + 1, state["step"], state["best_state"], optimizer


def _train(cfg: FinetuneConfig, model: Classifier, dataset: ClipDataset, loader: DataLoader,
           cache: VideoCache, val: pd.DataFrame, log: JsonlLog, *, device: torch.device,
           pos_weight: float, generator: torch.Generator, classes: tuple[str, ...] | None = None,
           class_weight: torch.Tensor | None = None) -> tuple[EarlyStopping, dict | None]:
    """The epochs: train, validate, keep the best weights, stop early; returns the stopper and
    the best state (None when no validation loss was a number)."""
    stopper = EarlyStopping(cfg.patience, start=cfg.min_epochs)
    guard = StepGuard(model, what=f"finetune {cfg.out}",
                      precision=resolve_precision(cfg.precision, device))
    start, step, best_state, optimizer = _resume(cfg, model, stopper, log, generator, guard)
    bar = tqdm(total=cfg.max_steps or cfg.epochs * len(loader), initial=step,
               disable=not cfg.progress, desc=f"finetune {cfg.task}", unit="step")
    for epoch in range(start, cfg.epochs):
        if stopper.should_stop or (cfg.max_steps and step >= cfg.max_steps):
            break
        frozen = _frozen(cfg, epoch)
        if optimizer is None or epoch == cfg.head_epochs:
            optimizer = torch.optim.Adam(param_groups(model, cfg, frozen=frozen))
        dataset.set_epoch(epoch)
        losses, step = train_one_epoch(model, optimizer, loader, cfg, step=step, device=device,
                                       pos_weight=pos_weight, generator=generator,
                                       frozen=frozen, on_step=lambda: bar.update(1),
                                       class_weight=class_weight, guard=guard)
        if epoch < stopper.start:  # never kept: not validated (at 50 studies a third of the
            # epoch's time is the validation pass)
            log.write(epoch=epoch, step=step, train_loss=float(np.mean(losses)), best=False,
                      skipped_steps=guard.skipped)
        else:
            val_loss, val_auroc = validate(model, cache, val, cfg, device, pos_weight, classes,
                                           class_weight)
            # EarlyStopping keeps the lowest value: the loss, or the AUROC negated.
            improved = stopper.update(epoch,
                                      val_loss if cfg.select_on == "val_loss" else -val_auroc)
            if improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log.write(epoch=epoch, step=step, train_loss=float(np.mean(losses)),
                      val_loss=val_loss, val_auroc=val_auroc, best=improved,
                      skipped_steps=guard.skipped)
            bar.set_postfix(val_loss=f"{val_loss:.3f}", val_auroc=f"{val_auroc:.3f}")
        save_checkpoint(Path(cfg.out) / CHECKPOINT, model=model, optimizer=optimizer,
                        epoch=epoch, step=step, stopper=stopper, best_state=best_state,
                        generator=generator, settings=resume_settings(cfg),
                        guard=guard.state_dict())
    bar.close()
    guard.warn()
    return stopper, best_state


def _save_model(model, cfg, meta, cache, out, stopper, classes=None) -> None:
    """``model.pt`` (tensors only) + ``model.json`` (everything predict needs to replay; a
    multi-class model's ``classes``, in the order of its logits)."""
    info = {"encoder": meta["encoder"], "width": meta["width"], "task": cfg.task,
            "init": cfg.init, "readout": "lpft" if cfg.head_init else "finetune",
            "view": readout_view(cfg.task, cfg.view),
            "clip_len": cfg.clip_len, "period": cfg.period,
            "dropout": cfg.dropout, "eval_clips": cfg.eval_clips,
            "preprocessing": cache.preprocessing.to_dict(),  # the cache's record, unchanged
            "cache": str(Path(cfg.cache).resolve()), "best_epoch": stopper.best_epoch,
            "selected_on": cfg.select_on, "best_val": stopper.best,
            "finetune_config": dataclasses.asdict(cfg)}
    if classes is not None:
        info |= {"classes": list(classes), "label_level": "video"}
    save_classifier(model, out, info)


def _finetune_grid(cfg: FinetuneConfig) -> Path:
    """Written-down LR rule: the lr whose run has the best validation study AUROC (ties: lower
    validation loss) is kept; every candidate's run stays in ``out/lr_*``."""
    out = Path(cfg.out)
    scores = {}
    for lr in cfg.lr_grid:
        sub = dataclasses.replace(cfg, lr=lr, lr_grid=(), out=str(out / f"lr_{lr:g}"))
        finetune(sub)
        # The epoch the run kept (by --select-on), not its lowest-loss epoch: the model kept is
        # the one compared.
        kept = json.loads((Path(sub.out) / "model.json").read_text())["best_epoch"]
        row = next(r for r in JsonlLog(Path(sub.out) / "log.jsonl").rows() if r["epoch"] == kept)
        auroc = row["val_auroc"] if row["val_auroc"] == row["val_auroc"] else -1.0
        scores[lr] = (auroc, -row["val_loss"])
    chosen = max(scores, key=scores.get)
    for name in ("model.pt", "model.json", "log.jsonl"):
        shutil.copy2(out / f"lr_{chosen:g}" / name, out / name)
    write_config(cfg, out, {"chosen_lr": chosen, "lr_rule": "best validation study AUROC",
                            "grid_scores": {str(k): v[0] for k, v in scores.items()}})
    return out
