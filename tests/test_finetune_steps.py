"""The fine-tuning step and epoch on a tiny model and hand-made batches: the learning rates each
parameter group gets, what a frozen step leaves untouched, augmentation drawn from the given
generator only, the step budget, and early stopping's ties."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from echoclr.commands.finetune import FinetuneConfig
from echoclr.finetuning import EarlyStopping, param_groups, train_one_epoch, train_step
from echoclr.models import Classifier, build_encoder

CFG = FinetuneConfig(encoder="r3d_tiny", width=4, clip_len=4, lr=1e-2, encoder_lr_scale=0.1,
                     precision="fp32", augment=True, label_smoothing=0.1)
CPU = torch.device("cpu")


def tiny_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(build_encoder("r3d_tiny", width=4), dropout=0.0)


def batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"clip": torch.randint(0, 256, (4, 4, 24, 24), generator=g, dtype=torch.uint8),
             "label": torch.tensor([0.0, 1.0, 0.0, 1.0])} for _ in range(n)]


def encoder_state(model: Classifier) -> dict:
    return {k: v.clone() for k, v in model.encoder.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_head_learns_at_lr_and_the_encoder_at_lr_times_its_scale():
    model = tiny_model()
    groups = param_groups(model, CFG, frozen=False)
    optimizer = torch.optim.Adam(groups)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2, 1e-3])
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == \
        {id(p) for p in model.head.parameters()}
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == \
        {id(p) for p in model.encoder.parameters()}
    (frozen,) = torch.optim.Adam(param_groups(model, CFG, frozen=True)).param_groups
    assert frozen["lr"] == pytest.approx(1e-2) and len(frozen["params"]) == 2  # weight, bias


def test_a_step_trains_the_encoder_unless_frozen():
    model = tiny_model()
    optimizer = torch.optim.Adam(param_groups(model, CFG, frozen=False))
    before = encoder_state(model)
    train_step(model, optimizer, batches(1)[0], CFG, device=CPU, pos_weight=1.0,
               generator=torch.Generator().manual_seed(0))  # default: not frozen
    weights = {k for k in before if "running" not in k and "num_batches" not in k}
    assert changed(before, encoder_state(model)) >= weights


def test_a_frozen_epoch_leaves_the_encoder_and_its_statistics_as_they_were():
    model = tiny_model()
    optimizer = torch.optim.Adam(param_groups(model, CFG, frozen=False))  # even if stepped
    before, head = encoder_state(model), model.head.weight.detach().clone()
    losses, step = train_one_epoch(model, optimizer, batches(3), CFG, step=0, device=CPU,
                                   pos_weight=1.0, generator=torch.Generator().manual_seed(0),
                                   frozen=True)
    assert len(losses) == 3 and step == 3
    assert changed(before, encoder_state(model)) == set()  # weights and BatchNorm statistics
    assert all(p.grad is None for p in model.encoder.parameters())
    assert not torch.equal(head, model.head.weight)


def test_augmentation_comes_from_the_given_generator_alone():
    def run(generator_seed: int, global_seed: int) -> torch.Tensor:
        model = tiny_model()
        optimizer = torch.optim.Adam(param_groups(model, CFG, frozen=False))
        torch.manual_seed(global_seed)  # whatever else has drawn from torch's global RNG
        train_one_epoch(model, optimizer, batches(2), CFG, step=0, device=CPU, pos_weight=2.0,
                        generator=torch.Generator().manual_seed(generator_seed), frozen=False)
        return model.head.weight.detach().clone()

    torch.testing.assert_close(run(1, 10), run(1, 99), rtol=0, atol=0)
    assert not torch.equal(run(1, 10), run(2, 10))  # the augmentation is random at all
    plain = dataclasses.replace(CFG, augment=False)
    model = tiny_model()
    optimizer = torch.optim.Adam(param_groups(model, plain, frozen=False))
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    train_step(model, optimizer, batches(1)[0], plain, device=CPU, pos_weight=1.0, generator=g)
    assert torch.equal(g.get_state(), state)  # no augmentation: nothing drawn


@pytest.mark.parametrize("start, max_steps, expected", [(0, None, 5), (1, 3, 2), (0, 5, 5),
                                                        (2, 3, 1)])
def test_the_step_budget_counts_steps_done_before(start, max_steps, expected):
    cfg = dataclasses.replace(CFG, max_steps=max_steps, augment=False)
    model = tiny_model()
    optimizer = torch.optim.Adam(param_groups(model, cfg, frozen=False))
    calls = []
    losses, step = train_one_epoch(model, optimizer, batches(5), cfg, step=start, device=CPU,
                                   pos_weight=1.0, generator=torch.Generator(), frozen=False,
                                   on_step=lambda: calls.append(1))
    assert len(losses) == expected and step == start + expected and len(calls) == expected


def test_early_stopping_keeps_the_first_of_equal_epochs():
    stopper = EarlyStopping(patience=2)
    assert stopper.best_epoch == -1 and stopper.bad_epochs == 0  # no best epoch yet
    assert stopper.update(0, float("nan")) is False and stopper.best_epoch == -1
    assert stopper.update(1, 0.5) is True
    assert stopper.update(2, 0.5) is False  # a tie is not better
    assert (stopper.best_epoch, stopper.bad_epochs, stopper.should_stop) == (1, 1, False)
    assert stopper.update(3, 0.6) is False and stopper.should_stop
