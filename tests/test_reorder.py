"""Frame reordering: class k is the k-th ordering of ``itertools.permutations``, the views carry
the ordering their label names, and the loss is the cross-entropy written out by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from echoclr.data.transforms import permute_frames
from echoclr.losses import reorder_loss
from echoclr.commands.pretrain import PretrainConfig
from echoclr.pretraining import make_views

ORDERINGS = list(itertools.permutations(range(4)))  # lexicographic; 0 is the identity


def hand_cross_entropy(logits: torch.Tensor, target: list[int]) -> float:
    """mean_b [log sum_k exp(logit_bk) - logit_b,target_b], in double precision."""
    total = 0.0
    for row, k in zip(logits.double().tolist(), target):
        top = max(row)
        log_sum = top + math.log(sum(math.exp(v - top) for v in row))
        total += log_sum - row[k]
    return total / len(target)


def frame_order(clip: torch.Tensor) -> tuple[int, ...]:
    """The source frame of each position of a clip whose frame t is filled with the value t."""
    return tuple(int(round(v)) for v in clip.flatten(1)[:, 0].tolist())


def numbered_clips(b: int, t: int = 4, size: int = 6) -> torch.Tensor:
    return torch.arange(t).float().view(1, t, 1, 1).expand(b, t, size, size).clone()


def test_class_index_is_the_itertools_ordering():
    classes = torch.tensor([0, 1, 7, 13, 23, 5])
    out = permute_frames(numbered_clips(6), classes)
    for clip, k in zip(out, classes.tolist()):
        assert frame_order(clip) == ORDERINGS[k]


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_reorder_loss_is_the_hand_written_cross_entropy(batch):
    g = torch.Generator().manual_seed(batch)
    logits = torch.randn(batch, 24, generator=g) * 3
    target = [ORDERINGS.index(tuple(torch.randperm(4, generator=g).tolist()))
              for _ in range(batch)]
    got = reorder_loss(logits, torch.tensor(target)).item()
    assert got == pytest.approx(hand_cross_entropy(logits, target), rel=1e-5)
    # bf16 logits (autocast) are scored in float32: the same up to the bf16 rounding of inputs
    low = logits.bfloat16()
    assert reorder_loss(low, torch.tensor(target)).dtype == torch.float32
    assert reorder_loss(low, torch.tensor(target)).item() == pytest.approx(
        hand_cross_entropy(low.float(), target), rel=1e-5)


def test_reorder_loss_rewards_the_true_ordering_only():
    logits = torch.zeros(2, 24)
    logits[0, 9] = logits[1, 17] = 6.0
    right = reorder_loss(logits, torch.tensor([9, 17])).item()
    wrong = reorder_loss(logits, torch.tensor([17, 9])).item()
    assert right == pytest.approx(hand_cross_entropy(logits, [9, 17]), rel=1e-6)
    assert wrong == pytest.approx(hand_cross_entropy(logits, [17, 9]), rel=1e-6)
    assert right < math.log(24) < wrong


@pytest.mark.parametrize("reorder_input", ["shared", "separate"])
def test_each_permuted_view_carries_the_ordering_its_label_names(reorder_input):
    b = 5
    batch = {"clip_a": numbered_clips(b), "clip_b": numbered_clips(b),
             "study": torch.arange(b)}
    cfg = PretrainConfig(method="echoclr", clip_len=4, augment=False,
                         reorder_input=reorder_input)
    x, _, perm = make_views(batch, cfg, step=3, device=torch.device("cpu"))
    permuted = x[-len(perm):, 0]  # channel 0: (n, T, H, W), minmax scaled to [0, 1]
    for clip, k in zip(permuted, perm.tolist()):
        assert frame_order(clip * 3) == ORDERINGS[k]
    assert len(set(perm.tolist())) > 1  # the orderings are drawn, not fixed
