"""Losses: a study-aware, gather-aware NT-Xent and frame reordering (pretraining), and the
class-weighted, label-smoothed BCE of fine-tuning.

NT-Xent as in SimCLR (Chen et al. 2020) with the multi-instance positives of Holste et al. 2024.
Items of the same study that land in one batch are not used as each other's negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from echoclr import distributed


def nt_xent(
    z_a: torch.Tensor, z_b: torch.Tensor, *, temperature: float = 0.05,
    study: torch.Tensor | None = None, return_logits: bool = False,
):
    """Normalized-temperature cross-entropy over a batch of positive pairs.

    Under ``torch.distributed`` the projections (and study ids) of every process are gathered
    with gradients, so the negatives are global; this process's 2B rows are its queries.

    Args:
        z_a, z_b: (B, D) projections of the two members of each positive pair.
        temperature: softmax temperature of the cosine similarities.
        study: long (B,) study id of each pair, or None. Keys of the query's own study other
            than its positive are masked out of the denominator (no false negatives).
        return_logits: also return the masked logits (2B, 2N) and targets (2B,).
    Returns:
        the mean loss over this process's 2B queries (a scalar), optionally with logits/targets.
    """
    b = z_a.shape[0]
    if z_b.shape[0] != b:
        raise ValueError(f"pair halves differ in size: {z_a.shape} vs {z_b.shape}")
    z_a = F.normalize(z_a.float(), dim=1)
    z_b = F.normalize(z_b.float(), dim=1)
    all_a = distributed.gather_with_grad(z_a)  # (N, D), N = B * world size
    all_b = distributed.gather_with_grad(z_b)
    n = all_a.shape[0]
    offset = distributed.rank() * b
    keys = torch.cat([all_a, all_b], dim=0)  # (2N, D)
    queries = torch.cat([z_a, z_b], dim=0)  # (2B, D)
    logits = queries @ keys.T / temperature  # (2B, 2N)

    local = torch.arange(b, device=z_a.device) + offset
    self_idx = torch.cat([local, local + n])
    targets = torch.cat([local + n, local])
    mask = torch.zeros_like(logits, dtype=torch.bool)
    rows = torch.arange(2 * b, device=z_a.device)
    mask[rows, self_idx] = True
    if study is not None:
        all_study = distributed.gather_no_grad(study.to(z_a.device))
        key_study = torch.cat([all_study, all_study])
        query_study = torch.cat([study, study]).to(z_a.device)
        same = query_study[:, None] == key_study[None, :]
        same[rows, targets] = False
        mask |= same
    logits = logits.masked_fill(mask, float("-inf"))
    loss = F.cross_entropy(logits, targets)
    return (loss, logits, targets) if return_logits else loss


def retrieval_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of queries whose true partner is the most similar of all candidates."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def reorder_loss(logits: torch.Tensor, perm_idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting which of the clip_len! orderings was applied: (B, K), (B,)."""
    return F.cross_entropy(logits.float(), perm_idx)


def smoothed_bce(logits: torch.Tensor, labels: torch.Tensor, *, pos_weight: float,
                 smoothing: float) -> torch.Tensor:
    """Fine-tuning's class-weighted BCE on smoothed targets ``y(1-s) + s/2``: (B,), (B,) → scalar."""
    targets = labels * (1 - smoothing) + smoothing / 2
    return F.binary_cross_entropy_with_logits(
        logits.float(), targets, pos_weight=torch.tensor(pos_weight, device=logits.device))


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, *, class_weight: torch.Tensor,
                smoothing: float) -> torch.Tensor:
    """The multi-class sibling of :func:`smoothed_bce`: class-weighted cross-entropy on targets
    smoothed to ``y(1-s) + s/K``: logits (B, K), class indices (B,), weights (K,) → scalar."""
    return F.cross_entropy(logits.float(), labels.long(), weight=class_weight.to(logits.device),
                           label_smoothing=smoothing)


def balanced_class_weight(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Weights ``n / (K n_k)`` of class indices (N,) → (K,), scikit-learn's "balanced" (a class
    without samples gets weight 0)."""
    counts = torch.bincount(labels.long(), minlength=n_classes).double()
    weight = len(labels) / (n_classes * counts)
    return torch.where(counts > 0, weight, torch.zeros_like(weight)).float()
