"""``echoclr pretrain``: self-supervised pretraining with SimCLR, MI-SimCLR or EchoCLR.

Runs as one process or under ``torchrun`` (DDP; negatives gathered across processes), with bf16
autocast where the hardware runs it fast and channels_last_3d, atomic checkpoints and exact
resume; writes ``encoder.pt`` + ``encoder.json`` for fine-tuning. The step itself is
:mod:`echoclr.pretraining`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from echoclr import distributed
from echoclr.data.cache import VideoCache
from echoclr.data.datasets import StudyPairDataset
from echoclr.data.sampling import ResumableSampler
from echoclr.data.selection import check_view
from echoclr.distributed import DistInfo
from echoclr.errors import UserError
from echoclr.models import PretrainModel, build_encoder
from echoclr.options import ViewSetting, cache_opt, opt, precision_opt, view_opt
from echoclr.pretraining import (
    CollapseMonitor,
    PretrainPlan,
    lr_at,
    plan_of,
    train_one_epoch,
)
from echoclr.runs import JsonlLog, resolve_precision, write_config
from echoclr.step_guard import StepGuard
from echoclr.weights import atomic_torch_save, load_weights, save_encoder


@dataclass(frozen=True)
class PretrainConfig(ViewSetting):
    cache: str = cache_opt()
    out: str = opt("runs/pretrain", "Run folder: config.json, log.jsonl, checkpoints, "
                                    "encoder.pt.")
    method: str = opt("echoclr", "Pretraining method: echoclr, mi-simclr or simclr.")
    encoder: str = opt("r3d_18", "Architecture: r3d_18, r2plus1d_18, mc3_18 or r3d_tiny.")
    width: int = opt(16, "Base width of r3d_tiny (features: 8 x width); ignored by the "
                         "torchvision encoders.")
    clip_len: int = opt(4, "Frames per pretraining clip (frame reordering has clip_len! "
                           "classes, so 2 to 5 for echoclr).")
    period: int = opt(1, "Stride between the frames of a clip; above 1 makes the motion "
                         "between frames visible.")
    pairs: str = opt("all", "all: every video pair of a study in each epoch (paper); study: one "
                            "random pair per study.")
    view: str | None = view_opt("PLAX", "Pretrain on the videos of this echo view only (PLAX, "
                                        "A4C …, in any case); all: every view.")
    batch_size: int = opt(196, "Positive pairs per process (paper: 196 per GPU).")
    epochs: int = opt(300, "Epochs (paper: 300 for MI-SimCLR and EchoCLR, 520 for SimCLR).")
    max_steps: int | None = opt(None, "Stop after this many optimizer steps, overriding epochs.")
    lr: float = opt(1e-3, "Adam learning rate; the paper's code used 0.1, which diverges here.")
    weight_decay: float = opt(0.0, "Adam weight decay (paper: none).")
    warmup_steps: int = opt(0, "Steps of linear learning-rate warm-up.")
    schedule: str = opt("constant", "Learning rate after any warm-up: constant (paper) or "
                                    "cosine (falls to 0 by the last step).")
    temperature: float = opt(0.05, "NT-Xent temperature (paper: 0.05).")
    reorder_weight: float = opt(1.0, "Weight of the frame-reordering loss (echoclr only).")
    augment: bool = opt(True, "Apply the paper's crop, flip and rotation to pretraining clips.")
    study_mask: bool = opt(True, "Same-study items in a batch are not each other's negatives "
                                 "(ours; the paper's code: they are).")
    # Research levers (ours, off by default, used by no preset): they helped frame reordering
    # learn on the demo cache (docs/findings.md); echoclr.pretraining resolves them.
    reorder_input: str = opt("shared", "shared: the contrastive views are the permuted clips "
                                       "(paper); separate: after any reorder warm-up they keep "
                                       "their frame order and a permuted copy of each first view "
                                       "feeds the reordering head (1.5x the clips per step).")
    reorder_warmup_steps: int = opt(0, "Train frame reordering alone for the first this many "
                                       "steps (echoclr only).")
    proj_batch_norm: bool = opt(False, "BatchNorm in the projection head, against collapse.")
    precision: str = precision_opt()
    compile: bool = opt(False, "Compile the model with torch.compile.")
    workers: int = opt(2, "Data-loader processes per training process.")
    device: str = opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N; under torchrun "
                              "a bare cuda means this process's GPU.")
    seed: int = opt(0, "Seed of data order, clips, augmentations and init.")
    checkpoint_every: int = opt(100, "Steps between checkpoints (and one at the end).")
    log_every: int = opt(10, "Steps between log rows.")
    resume: bool = opt(False, "Continue from RUN/checkpoint.pt.")
    progress: bool = opt(True, "Show a progress bar.")


def pretrain(cfg: PretrainConfig) -> Path:
    """Run pretraining; returns the path of the exported ``encoder.pt``."""
    plan = plan_of(cfg)  # refuses a bad method, lever or clip length before anything starts
    info = distributed.init_distributed(cfg.device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    cache = VideoCache(cfg.cache)
    rows, sampler, loader = _data(cfg, plan, cache, info)
    if info.is_main:  # the inputs check out
        out.mkdir(parents=True, exist_ok=True)
    total_steps = cfg.max_steps or cfg.epochs * len(loader)
    model = PretrainModel(build_encoder(cfg.encoder, width=cfg.width),
                          n_orderings=plan.n_orderings, proj_batch_norm=plan.proj_batch_norm)
    model = model.to(info.device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    log = JsonlLog(out / "log.jsonl", enabled=info.is_main)
    step, epoch, skip, guard_state = _resume(cfg, model, optimizer, log, info, total_steps)
    precision = resolve_precision(cfg.precision, info.device)
    if info.is_main:
        write_config(cfg, out, {"world_size": info.world_size, "steps_per_epoch": len(loader),
                                "precision_resolved": precision,
                                "total_steps": total_steps, "n_train_videos": len(rows),
                                "n_train_studies": int(rows["study_id"].nunique())})
    train_model = _wrap(model, cfg, info)
    monitor = CollapseMonitor()
    guard = StepGuard(train_model, what=f"pretrain {out}", precision=precision)
    guard.load_state_dict(guard_state)
    recorder = StepRecorder(cfg, model, optimizer, log, info, monitor, start=step,
                            total_steps=total_steps, steps_per_epoch=len(loader), guard=guard)
    train_model.train()
    while step < total_steps:
        sampler.set_epoch(epoch)
        sampler.set_start(skip * loader.batch_size)
        step = train_one_epoch(train_model, optimizer, loader, cfg, epoch=epoch, step=step,
                               skip=skip, total_steps=total_steps, device=info.device,
                               monitor=monitor, after_step=recorder, rank=info.rank,
                               guard=guard)
        epoch, skip = epoch + 1, 0
    recorder.close()
    if info.is_main:
        guard.warn()
    return _export(cfg, plan, model, cache, log, monitor, info)


def _data(cfg: PretrainConfig, plan: PretrainPlan, cache: VideoCache, info: DistInfo):
    """The training rows, the resumable sampler and the loader of positive pairs."""
    check_view(cache, cfg.view)
    rows = cache.rows("train", cfg.view)  # pretraining never reads labels or other splits
    if rows.empty:
        raise UserError(f"{cache.root / 'manifest.csv'}: no training videos"
                        f"{f' of view {cfg.view}' if cfg.view else ''}: give some studies "
                        "split train")
    dataset = StudyPairDataset(cache, rows, clip_len=cfg.clip_len, period=cfg.period,
                               pairs=cfg.pairs, mode=plan.pair_mode, seed=cfg.seed)
    sampler = ResumableSampler(len(dataset), num_replicas=info.world_size, rank=info.rank,
                               seed=cfg.seed)
    batch_size = min(cfg.batch_size, len(sampler))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                        pin_memory=info.device.type == "cuda")
    if len(loader) == 0:
        raise UserError(f"--batch-size {batch_size} leaves no full batch of {len(sampler)} "
                        "items per process: lower it")
    return rows, sampler, loader


def _resume(cfg: PretrainConfig, model, optimizer, log: JsonlLog, info: DistInfo,
            total_steps: int) -> tuple[int, int, int, dict | None]:
    """(step, epoch, batch in epoch, step-guard counters) to start from: RUN/checkpoint.pt's
    with ``--resume``.

    Raises:
        UserError: a cosine run resumed with another length: its rate at every step depends on
            the length, so the steps already taken would not be those of the longer run.
    """
    path = Path(cfg.out) / "checkpoint.pt"
    if cfg.resume and path.is_file():
        state = load_weights(path, map_location=info.device)
        planned = state.get("total_steps", total_steps)  # older checkpoints did not record it
        if cfg.schedule == "cosine" and planned != total_steps:
            raise UserError(f"--resume: {path} is a cosine schedule laid out for {planned} "
                            f"steps, not {total_steps}; resume with --max-steps {planned}, or "
                            "start a new run (a --schedule constant run can be extended)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        log.truncate_after(state["step"])
        return state["step"], state["epoch"], state["batch_in_epoch"], state.get("guard")
    if info.is_main:
        log.path.unlink(missing_ok=True)
    return 0, 0, 0, None


def _wrap(model: torch.nn.Module, cfg: PretrainConfig, info: DistInfo) -> torch.nn.Module:
    """The module the steps run: DDP across processes, compiled on request."""
    if info.world_size > 1:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    return torch.compile(model) if cfg.compile else model


class StepRecorder:
    """What follows each step: a log row every ``log_every`` steps (metrics averaged over
    processes, throughput), the progress bar, and rank 0's checkpoints."""

    def __init__(self, cfg: PretrainConfig, model, optimizer, log: JsonlLog, info: DistInfo,
                 monitor: CollapseMonitor, *, start: int, total_steps: int,
                 steps_per_epoch: int, guard: StepGuard | None = None):
        self.cfg, self.model, self.optimizer, self.log = cfg, model, optimizer, log
        self.info, self.monitor, self.guard = info, monitor, guard
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.bar = tqdm(total=total_steps, initial=start, unit="step",
                        desc=f"pretrain {cfg.method}", disable=not (cfg.progress and info.is_main))
        self.tic, self.clips_seen = time.perf_counter(), 0

    def __call__(self, step: int, epoch: int, batch_in_epoch: int, metrics: dict,
                 n_clips: int) -> None:
        cfg = self.cfg
        self.clips_seen += n_clips * self.info.world_size
        if step % cfg.log_every == 0 or step == self.total_steps:
            rate = self.clips_seen / (time.perf_counter() - self.tic)
            row = {k: distributed.all_reduce_mean(v) for k, v in metrics.items()}
            row |= {"chance_nt_xent": self.monitor.chance, "clips_per_s": round(rate, 1)}
            if self.guard is not None:  # this process's run so far: the same on every process
                row["skipped_steps"] = self.guard.skipped
            self.log.write(step=step, epoch=epoch, lr=lr_at(cfg, step - 1, self.total_steps), **row)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "chance_nt_xent"})
        self.bar.update(1)
        if self.info.is_main and (step % cfg.checkpoint_every == 0 or step >= self.total_steps):
            at_end = batch_in_epoch + 1 == self.steps_per_epoch  # resume at the next epoch
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "step": step, "epoch": epoch + at_end, "total_steps": self.total_steps,
                     "batch_in_epoch": 0 if at_end else batch_in_epoch + 1}
            if self.guard is not None:
                state["guard"] = self.guard.state_dict()
            atomic_torch_save(state, Path(cfg.out) / "checkpoint.pt")

    def close(self) -> None:
        self.bar.close()


def _export(cfg: PretrainConfig, plan: PretrainPlan, model: PretrainModel, cache: VideoCache,
            log: JsonlLog, monitor: CollapseMonitor, info: DistInfo) -> Path:
    """Warn of a collapse, write ``encoder.pt`` + sidecar and the loss curves (rank 0)."""
    warning = monitor.verdict(log.rows(), after_step=plan.contrastive_from)
    if warning and info.is_main:
        warnings.warn(warning, stacklevel=3)
    encoder_path = Path(cfg.out) / "encoder.pt"
    if info.is_main:
        save_encoder(model.encoder, encoder_path, encoder_meta(cfg, cache, warning))
        _plot_log(log, Path(cfg.out), cfg, plan)
    distributed.barrier()
    return encoder_path


def encoder_meta(cfg: PretrainConfig, cache: VideoCache, warning: str | None) -> dict:
    """The sidecar of ``encoder.pt``: what a fine-tuning run needs to rebuild and feed it."""
    return {"encoder": cfg.encoder, "width": cfg.width, "method": cfg.method,
            "clip_len": cfg.clip_len, "period": cfg.period,
            "preprocessing": cache.preprocessing.to_dict(),
            "input": "grayscale repeated to 3 channels, per-clip min-max scaled to [0, 1]",
            "pretrain_config": dataclasses.asdict(cfg), "collapse_warning": warning}


def _plot_log(log: JsonlLog, out: Path, cfg: PretrainConfig, plan: PretrainPlan) -> None:
    from echoclr.plots import plot_loss_curves  # matplotlib only when plotting

    rows = log.rows()
    if not rows:
        return
    keys = [k for k in ("loss", "nt_xent", "reorder_acc", "retrieval_acc") if k in rows[0]]
    # Chance levels: NT-Xent of uniform similarities is log(#candidates); retrieval picks one of
    # them; reordering one of clip_len! orderings.
    logged = [r["chance_nt_xent"] for r in rows if "chance_nt_xent" in r]
    log_candidates = sum(logged) / len(logged) if logged else math.nan
    chance = {"nt_xent": log_candidates, "retrieval_acc": math.exp(-log_candidates),
              "reorder_acc": 1 / math.factorial(cfg.clip_len)}
    marks = ({"reordering-only warm-up ends": plan.contrastive_from}
             if plan.contrastive_from else {})
    plot_loss_curves(rows, out / "loss_curves.png", keys, chance=chance, marks=marks)
