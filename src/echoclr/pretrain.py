"""Self-supervised pretraining: SimCLR, MI-SimCLR and EchoCLR (Holste et al. 2024).

``pretrain(cfg)`` runs as one process or under ``torchrun`` (DDP; negatives gathered across
processes), with bf16 autocast + channels_last_3d by default, atomic checkpoints and exact
resume, and writes ``encoder.pt`` + ``encoder.json`` for fine-tuning.
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
from echoclr.data.datasets import StudyPairDataset, VideoCache
from echoclr.data.sampling import ResumableSampler
from echoclr.data.transforms import (
    augment_clips, gamma_jitter, minmax_scale, permute_frames, to_model_input,
)
from echoclr.losses import nt_xent, reorder_loss, retrieval_accuracy
from echoclr.models import (REORDER_HEADS, PretrainModel, build_encoder, load_weights,
                            save_encoder)
from echoclr.runs import (
    JsonlLog, atomic_torch_save, autocast, pick_device, resolve_precision, write_config,
)

METHODS = ("echoclr", "mi-simclr", "simclr")


@dataclass(frozen=True)
class PretrainConfig:
    cache: str = ""  # folder written by `echoclr ingest`
    out: str = "runs/pretrain"  # run folder (config.json, log.jsonl, checkpoints, encoder.pt)
    method: str = "echoclr"  # echoclr | mi-simclr | simclr
    encoder: str = "r3d_18"  # r3d_18 | r2plus1d_18 | mc3_18 | r3d_tiny
    width: int = 16  # base width of r3d_tiny (feature dim 8x); ignored by torchvision encoders
    clip_len: int = 4  # frames per pretraining clip (reordering has clip_len! classes)
    period: int = 1  # frame stride within a clip; >1 makes motion between frames visible
    pairs: str = "all"  # all: every video pair of a study per epoch (paper); study: one per study
    view: str | None = "PLAX"  # pretrain on this view only (None: all views)
    batch_size: int = 196  # positive pairs per process (paper: 196 per GPU)
    epochs: int = 300  # paper: 300 (MI-SimCLR/EchoCLR), 520 (SimCLR)
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    lr: float = 1e-3  # Adam; the paper's code used 0.1, which diverges here (see README)
    weight_decay: float = 0.0  # paper: none
    warmup_steps: int = 0  # linear learning-rate warm-up
    temperature: float = 0.05  # NT-Xent temperature (paper)
    reorder_weight: float = 1.0  # weight of the frame-reordering loss (EchoCLR only)
    reorder_input: str = "shared"  # shared: the contrastive views are the permuted clips (paper);
    # separate: after any reorder warm-up they keep their frame order and a permuted copy of
    # each first view feeds the reordering head (1.5x the clips per step; ours)
    reorder_head: str = "linear"  # linear (paper) | mlp: a hidden layer of its own (ours)
    reorder_warmup_steps: int = 0  # EchoCLR: train frame reordering alone for the first N steps
    warmup_contrastive_weight: float = 0.0  # NT-Xent weight during that warm-up (>0 keeps the
    # projection head learning, so the contrastive loss does not restart from a collapsed head)
    augment: bool = True  # the paper's crop/flip/rotation on pretraining clips
    gamma_jitter: float = 0.0  # random display curve x**g, |log g| <= this (ours; paper: 0)
    study_mask: bool = True  # same-study items in a batch are not negatives (ours; paper: no)
    proj_batch_norm: bool = False  # BatchNorm in the projection head (guards against collapse)
    precision: str = "auto"  # auto (bf16 on GPUs and AMX CPUs, else fp32) | bf16 | fp32
    compile: bool = False  # torch.compile the model
    workers: int = 2  # data-loader processes per training process
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0  # data order, clips, augmentations and init
    checkpoint_every: int = 100  # steps between checkpoints (and at the end)
    log_every: int = 10  # steps between log rows
    resume: bool = False  # continue from RUN/checkpoint.pt
    progress: bool = True  # tqdm progress bar


def _step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Augmentation/permutation draws depend only on (seed, rank, step): resume replays them, and
    each DDP process draws its own (rank 0 keeps the single-process stream). The CPU generator
    uses only the low 32 bits of its seed: the rank offset is an odd 32-bit constant."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + step + rank * 0x9E3779B1)
    return g


def make_views(batch: dict, cfg: PretrainConfig, step: int, device: torch.device, *,
               rank: int = 0):
    """Augment, scale and (EchoCLR) permute a batch of B pairs (``rank``: this process's).

    Returns:
        x: (2B, 3, T, H, W) model input, channels_last_3d — the two views, first views first; with
        ``reorder_input="separate"`` after the reorder warm-up (3B, ...): the two views in their
        true frame order, then a permuted copy of each first view. study: (B,). perm: None
        without reordering, else the ordering class of each permuted clip: (2B,) or (B,).
    """
    g = _step_generator(cfg.seed, step, rank)
    clips = torch.cat([batch["clip_a"], batch["clip_b"]]).to(device, non_blocking=True)
    clips = gamma_jitter(minmax_scale(clips), cfg.gamma_jitter, generator=g)
    if cfg.augment:
        clips = augment_clips(clips, generator=g)
    perm = None
    if cfg.method == "echoclr":
        # During a reorder warm-up there is no contrastive view to keep in order: permute all.
        separate = cfg.reorder_input == "separate" and step >= cfg.reorder_warmup_steps
        b = batch["clip_a"].shape[0]
        n_permuted = b if separate else clips.shape[0]
        perm = torch.randint(0, math.factorial(cfg.clip_len), (n_permuted,), generator=g)
        perm = perm.to(device)
        if separate:
            clips = torch.cat([clips, permute_frames(clips[:b], perm)])
        else:
            clips = permute_frames(clips, perm)
    return to_model_input(clips), batch["study"].to(device), perm


def _checkpoint_state(model, optimizer, step, epoch, batch_in_epoch) -> dict:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch}


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


def pretrain(cfg: PretrainConfig) -> Path:
    """Run pretraining; returns the path of the exported ``encoder.pt``."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {METHODS}")
    if cfg.reorder_input not in ("shared", "separate"):
        raise ValueError(f"reorder_input must be 'shared' or 'separate', got {cfg.reorder_input!r}")
    if cfg.reorder_head not in REORDER_HEADS:
        raise ValueError(f"unknown reorder head {cfg.reorder_head!r}; choose from {REORDER_HEADS}")
    if cfg.reorder_warmup_steps and cfg.method != "echoclr":
        raise ValueError(f"reorder_warmup_steps={cfg.reorder_warmup_steps} needs method "
                         f"'echoclr' (frame reordering), not {cfg.method!r}")
    info = distributed.init_distributed(cfg.device)
    device = info.device if cfg.device == "auto" else pick_device(cfg.device)
    out = Path(cfg.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    cache = VideoCache(cfg.cache)
    rows = cache.rows("train", cfg.view)  # pretraining never reads labels or other splits
    if rows.empty:
        raise ValueError(f"{cfg.cache}: no training videos (view={cfg.view})")
    dataset = StudyPairDataset(
        cache, rows, clip_len=cfg.clip_len, period=cfg.period, pairs=cfg.pairs,
        mode="simclr" if cfg.method == "simclr" else "multi_instance", seed=cfg.seed)
    sampler = ResumableSampler(len(dataset), num_replicas=info.world_size, rank=info.rank,
                               seed=cfg.seed)
    batch_size = min(cfg.batch_size, len(sampler))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                        pin_memory=device.type == "cuda")
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} leaves no full batch of {len(sampler)} items")
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch

    n_orderings = math.factorial(cfg.clip_len) if cfg.method == "echoclr" else 0
    model = PretrainModel(build_encoder(cfg.encoder, width=cfg.width), n_orderings=n_orderings,
                          proj_batch_norm=cfg.proj_batch_norm, reorder_head_kind=cfg.reorder_head)
    model = model.to(device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, skip = 0, 0, 0
    log = JsonlLog(out / "log.jsonl", enabled=info.is_main)
    ckpt_path = out / "checkpoint.pt"
    if cfg.resume and ckpt_path.is_file():
        state = load_weights(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        log.truncate_after(step)
    elif info.is_main:
        (out / "log.jsonl").unlink(missing_ok=True)
    if info.is_main:
        write_config(cfg, out, {"world_size": info.world_size, "steps_per_epoch": steps_per_epoch,
                                "precision_resolved": resolve_precision(cfg.precision, device),
                                "total_steps": total_steps, "n_train_videos": len(rows),
                                "n_train_studies": int(rows["study_id"].nunique())})
    train_model = model
    if info.world_size > 1:
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    bar = tqdm(total=total_steps, initial=step, disable=not (cfg.progress and info.is_main),
               desc=f"pretrain {cfg.method}", unit="step")
    monitor = CollapseMonitor()
    tic, clips_seen = time.perf_counter(), 0
    train_model.train()
    while step < total_steps:
        sampler.set_epoch(epoch)
        sampler.set_start(skip * batch_size)
        for batch_in_epoch, batch in enumerate(loader, start=skip):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(cfg, step)
            x, study, perm = make_views(batch, cfg, step, device, rank=info.rank)
            with autocast(device, cfg.precision):
                _, z, order_logits = train_model(x)
            b = study.shape[0]
            contrastive, logits, targets = nt_xent(
                z[:b], z[b:2 * b], temperature=cfg.temperature,
                study=study if cfg.study_mask else None, return_logits=True)
            # Reordering's learning sits on a long plateau that the contrastive loss prolongs (its
            # two views carry independent orderings, so it rewards order-invariant features): an
            # optional warm-up trains reordering (nearly) alone first. x0 keeps every parameter in
            # the graph.
            warming = step < cfg.reorder_warmup_steps  # only EchoCLR may set it (checked)
            loss = contrastive * (cfg.warmup_contrastive_weight if warming else 1.0)
            metrics = {"nt_xent": contrastive.item(),
                       "retrieval_acc": retrieval_accuracy(logits.detach(), targets)}
            if perm is not None:
                order_logits = order_logits[-len(perm):]  # separate: the permuted copies only
                r_loss = reorder_loss(order_logits, perm)
                loss = loss + cfg.reorder_weight * r_loss
                metrics["reorder_loss"] = r_loss.item()
                metrics["reorder_acc"] = (order_logits.argmax(1) == perm).float().mean().item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            clips_seen += x.shape[0] * info.world_size
            metrics["loss"] = loss.item()
            monitor.update(logits.detach(), z[:2 * b].detach())
            if step % cfg.log_every == 0 or step == total_steps:
                rate = clips_seen / (time.perf_counter() - tic)
                row = {k: distributed.all_reduce_mean(v) for k, v in metrics.items()}
                row |= {"chance_nt_xent": monitor.chance, "clips_per_s": round(rate, 1)}
                log.write(step=step, epoch=epoch, lr=_lr_at(cfg, step - 1), **row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "chance_nt_xent"})
            bar.update(1)
            done = step >= total_steps
            if info.is_main and (step % cfg.checkpoint_every == 0 or done):
                at_end = batch_in_epoch + 1 == steps_per_epoch
                atomic_torch_save(_checkpoint_state(
                    model, optimizer, step, epoch + at_end, 0 if at_end else batch_in_epoch + 1),
                    ckpt_path)
            if done:
                break
        else:
            epoch, skip = epoch + 1, 0
            continue
        break
    bar.close()
    # A reorder warm-up without contrastive weight leaves NT-Xent untrained: not a collapse.
    untrained = cfg.reorder_warmup_steps if not cfg.warmup_contrastive_weight else 0
    warning = monitor.verdict(log.rows(), after_step=untrained)
    if warning and info.is_main:
        warnings.warn(warning, stacklevel=2)
    encoder_path = out / "encoder.pt"
    if info.is_main:
        save_encoder(model.encoder, encoder_path, encoder_meta(cfg, cache, warning))
        _plot_log(log, out, cfg)
    distributed.barrier()
    return encoder_path


def encoder_meta(cfg: PretrainConfig, cache: VideoCache, warning: str | None) -> dict:
    """The sidecar of ``encoder.pt``: what a fine-tuning run needs to rebuild and feed it."""
    return {"encoder": cfg.encoder, "width": cfg.width, "method": cfg.method,
            "clip_len": cfg.clip_len, "period": cfg.period,
            "input_size": cache.config.get("size"), "preprocessing": cache.config,
            "input": "grayscale repeated to 3 channels, per-clip min-max scaled to [0, 1]",
            "pretrain_config": dataclasses.asdict(cfg), "collapse_warning": warning}


class CollapseMonitor:
    """Detects the known failure of multi-instance contrastive learning.

    Collapse shows as NT-Xent stuck at its chance value log(#candidates) with chance
    positive retrieval, or as all projections pointing one way (tiny spread).
    """

    def __init__(self):
        self.chance = float("nan")
        self.spread = float("nan")

    def update(self, logits: torch.Tensor, z: torch.Tensor) -> None:
        candidates = torch.isfinite(logits).sum(1).float()
        self.chance = candidates.log().mean().item()
        zn = torch.nn.functional.normalize(z.float(), dim=1)
        self.spread = zn.std(0).sum().item()

    def verdict(self, rows: list[dict], after_step: int = 0) -> str | None:
        """A warning for the log rows past ``after_step`` (earlier ones did not train NT-Xent)."""
        rows = [r for r in rows if r["step"] > after_step]
        if len(rows) < 4:
            return None
        last = rows[-max(1, len(rows) // 5):]
        loss = sum(r["nt_xent"] for r in last) / len(last)
        chance = sum(r["chance_nt_xent"] for r in last) / len(last)
        if loss > 0.97 * chance:
            return (f"contrastive learning looks collapsed: NT-Xent {loss:.3f} vs chance "
                    f"{chance:.3f} over the last {len(last)} log rows. Try a lower --lr, "
                    "--warmup-steps, --proj-batch-norm, a larger batch or a higher temperature.")
        if self.spread < 1e-2:
            return f"projections collapsed to one direction (spread {self.spread:.2e})"
        return None


def _plot_log(log: JsonlLog, out: Path, cfg: PretrainConfig) -> None:
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
    marks = ({"reordering-only warm-up ends": cfg.reorder_warmup_steps}
             if cfg.reorder_warmup_steps else {})
    plot_loss_curves(rows, out / "loss_curves.png", keys, chance=chance, marks=marks)
