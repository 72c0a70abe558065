"""One pretraining step of SimCLR, MI-SimCLR or EchoCLR (Holste et al. 2024), and one epoch.

:func:`plan_of` resolves a pretraining config once into a :class:`PretrainPlan` (which pairs
the dataset draws, whether and how frames are reordered), so the step asks the plan and never
the method string. :func:`train_step` and :func:`train_one_epoch` follow torchvision's video
reference scripts; :class:`CollapseMonitor` watches for the known failure of contrastive
learning. ``cfg`` is the pretrain command's config
(:class:`echoclr.commands.pretrain.PretrainConfig`).

Research levers (ours, off by default, used by no preset): three settings helped frame
reordering learn on the demo cache (docs/findings.md) and are kept, all resolved here:
``reorder_input="separate"`` and ``reorder_warmup_steps`` (see :class:`Reordering`), and
``proj_batch_norm`` (BatchNorm in the projection head, :class:`echoclr.models.ProjectionHead`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from echoclr.data.transforms import (
    MAX_REORDER_CLIP_LEN,
    augment_clips,
    minmax_scale,
    permute_frames,
    to_model_input,
)
from echoclr.errors import UserError
from echoclr.losses import nt_xent, reorder_loss, retrieval_accuracy
from echoclr.runs import autocast
from echoclr.step_guard import StepGuard

METHODS = ("echoclr", "mi-simclr", "simclr")
SCHEDULES = ("constant", "cosine")  # learning rate after warm-up: lr_at
REORDER_INPUTS = ("shared", "separate")


@dataclass(frozen=True)
class Reordering:
    """Frame reordering, EchoCLR's second objective: which of the clip_len! orderings a clip's
    frames were put in, predicted from its feature ``h``.

    The paper permutes the contrastive views themselves and trains both losses from the first
    step (``separate_input`` False, ``warmup_steps`` 0). Our two levers:
    ``separate_input``: once any warm-up is over, the contrastive views keep their frame order
    and a permuted copy of each first view feeds the reordering head (1.5x the clips per step);
    ``warmup_steps``: reordering alone for the first steps (NT-Xent weighs 0; with no
    contrastive view to keep in order yet, every view is permuted).
    """

    n_orderings: int  # clip_len! classes
    weight: float  # of the reordering loss beside NT-Xent
    separate_input: bool = False
    warmup_steps: int = 0

    def warming(self, step: int) -> bool:
        """Whether ``step`` trains reordering alone."""
        return step < self.warmup_steps

    def separate(self, step: int) -> bool:
        """Whether ``step`` feeds the reordering head a permuted copy of each first view."""
        return self.separate_input and not self.warming(step)


@dataclass(frozen=True)
class PretrainPlan:
    """What the method means for the loop, resolved once from the config."""

    pair_mode: str  # StudyPairDataset mode: "multi_instance" (MI-SimCLR, EchoCLR) | "simclr"
    reordering: Reordering | None  # EchoCLR only
    proj_batch_norm: bool  # BatchNorm in the projection head (a research lever, see above)

    @property
    def n_orderings(self) -> int:
        """Classes of the reordering head; 0: no head."""
        return self.reordering.n_orderings if self.reordering else 0

    @property
    def contrastive_from(self) -> int:
        """The first step that trains NT-Xent (after a reordering-only warm-up)."""
        return self.reordering.warmup_steps if self.reordering else 0


@functools.lru_cache(maxsize=16)
def plan_of(cfg) -> PretrainPlan:
    """The plan of a pretraining config; refuses an unknown method, a lever the method cannot
    use, and a clip length the reordering head cannot have.

    Raises:
        UserError: naming the setting (as its flag) and what it may be.
    """
    if cfg.method not in METHODS:
        raise UserError(f"--method {cfg.method}: unknown method {cfg.method!r}; choose from "
                        f"{METHODS}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule {cfg.schedule}: unknown learning-rate schedule; choose "
                         f"from {SCHEDULES}")
    if cfg.reorder_input not in REORDER_INPUTS:
        raise UserError(f"reorder_input (--reorder-input) must be one of {REORDER_INPUTS}, "
                         f"got {cfg.reorder_input!r}")
    reorders = cfg.method == "echoclr"
    for name, used in (("reorder_warmup_steps", cfg.reorder_warmup_steps != 0),
                       ("reorder_input", cfg.reorder_input != "shared")):
        if used and not reorders:
            raise UserError(f"{name}={getattr(cfg, name)!r} needs method 'echoclr' (frame "
                             f"reordering), not {cfg.method!r}")
    if reorders and not 2 <= cfg.clip_len <= MAX_REORDER_CLIP_LEN:
        raise UserError(f"--clip-len {cfg.clip_len}: frame reordering (method echoclr) "
                         f"classifies clip_len! orderings and needs 2 <= clip_len <= "
                         f"{MAX_REORDER_CLIP_LEN} ({MAX_REORDER_CLIP_LEN}! = "
                         f"{math.factorial(MAX_REORDER_CLIP_LEN)} classes)")
    if cfg.clip_len < 1:
        raise UserError(f"--clip-len {cfg.clip_len}: a clip needs at least one frame")
    reordering = Reordering(math.factorial(cfg.clip_len), cfg.reorder_weight,
                            separate_input=cfg.reorder_input == "separate",
                            warmup_steps=cfg.reorder_warmup_steps) if reorders else None
    return PretrainPlan(pair_mode="simclr" if cfg.method == "simclr" else "multi_instance",
                        reordering=reordering, proj_batch_norm=cfg.proj_batch_norm)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Augmentation/permutation draws depend only on (seed, rank, step): resume replays them, and
    each DDP process draws its own (rank 0 keeps the single-process stream). The CPU generator
    uses only the low 32 bits of its seed: the rank offset is an odd 32-bit constant."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + step + rank * 0x9E3779B1)
    return g


def lr_at(cfg, step: int, total_steps: int) -> float:
    """The learning rate of ``step`` (0-based) of ``total_steps``: linear warm-up over
    ``warmup_steps``, then ``lr`` (schedule "constant", the paper's) or a half cosine from ``lr``
    that reaches 0 after the last step ("cosine", SGDR without restarts, as SimCLR used)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    # Why decay: a short run with a constant rate ends wherever its last noisy steps left it,
    # so two runs that differ only in arithmetic (fp32 vs bf16) end far apart.
    span = max(total_steps - cfg.warmup_steps, 1)
    done = min(max(step - cfg.warmup_steps, 0), span)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * done / span))


def make_views(batch: dict, cfg, step: int, device: torch.device, *, rank: int = 0):
    """Augment, scale and (EchoCLR) permute a batch of B pairs (``rank``: this process's).

    Returns:
        x: (2B, 3, T, H, W) model input, channels_last_3d — the two views, first views first; when
        the reordering input is separate (after any warm-up) (3B, ...): the two views in their
        true frame order, then a permuted copy of each first view. study: (B,). perm: None
        without reordering, else the ordering class of each permuted clip: (2B,) or (B,).
    """
    reordering = plan_of(cfg).reordering
    g = step_generator(cfg.seed, step, rank)
    clips = torch.cat([batch["clip_a"], batch["clip_b"]]).to(device, non_blocking=True)
    clips = minmax_scale(clips)
    if cfg.augment:
        clips = augment_clips(clips, generator=g)
    perm = None
    if reordering is not None:
        separate = reordering.separate(step)
        b = batch["clip_a"].shape[0]
        n_permuted = b if separate else clips.shape[0]
        perm = torch.randint(0, reordering.n_orderings, (n_permuted,), generator=g).to(device)
        if separate:
            clips = torch.cat([clips, permute_frames(clips[:b], perm)])
        else:
            clips = permute_frames(clips, perm)
    return to_model_input(clips), batch["study"].to(device), perm


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, cfg, *,
               step: int, total_steps: int, device: torch.device, monitor: CollapseMonitor,
               rank: int = 0, guard: StepGuard | None = None) -> tuple[dict[str, float], int]:
    """One optimizer step on a batch of pairs {"clip_a", "clip_b": uint8 (B, T, H, W), "study"}.

    ``guard``: skips the update when the loss or a gradient is not finite (the commands always
    pass one; without it the step is taken as is).

    Returns:
        this process's metrics (nt_xent, retrieval_acc, [reorder_loss, reorder_acc], loss) and
        the number of clips the model saw.
    """
    reordering = plan_of(cfg).reordering
    for group in optimizer.param_groups:
        group["lr"] = lr_at(cfg, step, total_steps)
    x, study, perm = make_views(batch, cfg, step, device, rank=rank)
    if guard is not None:
        guard.before_forward()
    with autocast(device, cfg.precision):
        _, z, order_logits = model(x)
    b = study.shape[0]
    contrastive, logits, targets = nt_xent(
        z[:b], z[b:2 * b], temperature=cfg.temperature,
        study=study if cfg.study_mask else None, return_logits=True)
    # A reordering-only warm-up weighs NT-Xent 0: x0 keeps every parameter in the graph (DDP).
    warming = reordering is not None and reordering.warming(step)
    loss = contrastive * (0.0 if warming else 1.0)
    metrics = {"nt_xent": contrastive.item(),
               "retrieval_acc": retrieval_accuracy(logits.detach(), targets)}
    if reordering is not None:
        order_logits = order_logits[-len(perm):]  # separate input: the permuted copies only
        r_loss = reorder_loss(order_logits, perm)
        loss = loss + reordering.weight * r_loss
        metrics["reorder_loss"] = r_loss.item()
        metrics["reorder_acc"] = (order_logits.argmax(1) == perm).float().mean().item()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if guard is None:
        optimizer.step()
    else:
        guard.step(optimizer, loss)
    metrics["loss"] = loss.item()
    monitor.update(logits.detach(), z[:2 * b].detach())
    return metrics, x.shape[0]


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader, cfg, *,
                    epoch: int, step: int, skip: int, total_steps: int, device: torch.device,
                    monitor: CollapseMonitor,
                    after_step: Callable[[int, int, int, dict, int], None], rank: int = 0,
                    guard: StepGuard | None = None) -> int:
    """Train on the rest of one epoch (its first ``skip`` batches were done before a resume), or
    until ``total_steps``; returns the step reached.

    ``after_step(step, epoch, batch_in_epoch, metrics, n_clips)`` runs after every step (logging,
    checkpoints).
    """
    for batch_in_epoch, batch in enumerate(loader, start=skip):
        metrics, n_clips = train_step(model, optimizer, batch, cfg, step=step,
                                      total_steps=total_steps, device=device, monitor=monitor,
                                      rank=rank, guard=guard)
        step += 1
        after_step(step, epoch, batch_in_epoch, metrics, n_clips)
        if step >= total_steps:
            break
    return step


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
