"""finetune() itself: which studies it trains on, which weights it saves, which loss it minimises.

The helpers (label fractions, smoothed BCE, early stopping) have tests of their own; these check
that the training run uses them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import echoclr.commands.finetune as ft
import echoclr.finetuning as finetuning
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.errors import UserError
from echoclr.runs import JsonlLog


def tiny_cfg(cache, out, **kw) -> FinetuneConfig:
    base = dict(cache=str(cache), out=str(out), task="lvh", encoder="r3d_tiny", width=4,
                clip_len=4, batch_size=4, epochs=1, patience=5, workers=0, progress=False,
                eval_clips=1, val_clips=1, precision="fp32", device="cpu")
    return FinetuneConfig(**(base | kw))


def train_studies(cache, task: str) -> pd.DataFrame:
    """One row per training study with its label, read from the manifest."""
    manifest = pd.read_csv(cache / "manifest.csv", dtype={"study_id": str})
    train = manifest[manifest["split"] == "train"]
    return train.groupby("study_id")[task].first()


@pytest.fixture
def served(monkeypatch):
    """Study ids of every item the training dataset hands out."""
    studies = []

    class Recording(ft.ClipDataset):
        def __getitem__(self, key):
            item = super().__getitem__(key)
            studies.append(self.rows["study_id"].iloc[item["index"]])
            return item

    monkeypatch.setattr(ft, "ClipDataset", Recording)
    return studies


def test_training_sees_only_the_label_fraction(tiny_cache, tmp_path, served):
    labels = train_studies(tiny_cache, "lvh")
    finetune(tiny_cfg(tiny_cache, tmp_path / "half", fraction=0.5, epochs=2))
    seen = set(served)
    assert seen <= set(labels.index)
    # 6 negative and 6 positive training studies: half of each class, both classes.
    per_class = labels[sorted(seen)].value_counts()
    assert per_class.to_dict() == {0: 3, 1: 3}
    # Every video of the chosen studies, once per epoch (2 epochs, 3 videos per study).
    assert len(served) == 2 * 3 * len(seen)
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    assert config["n_train_studies"] == 6 and config["n_train_videos"] == 18

    served.clear()
    finetune(tiny_cfg(tiny_cache, tmp_path / "quarter", fraction=0.25))
    assert set(served) < seen  # nested: the smaller fraction's studies lie inside


def test_saved_model_holds_the_best_epochs_weights(tiny_cache, tmp_path, monkeypatch):
    val_losses = iter([1.0, 0.5, 0.8, 0.9, 0.3, 0.2])  # best at epoch 1, then 2 bad epochs
    states = []

    def fake_validate(model, *args):
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(val_losses), 0.5

    monkeypatch.setattr(ft, "validate", fake_validate)
    run = finetune(tiny_cfg(tiny_cache, tmp_path / "ft", epochs=6, patience=2))
    assert len(states) == 4  # epochs 2 and 3 do not improve: stop after exactly patience
    saved = torch.load(run / "model.pt", weights_only=True)
    changed = [k for k in saved if not torch.equal(states[1][k], states[-1][k])]
    assert changed  # training moved the weights after the best epoch
    for k, v in saved.items():
        torch.testing.assert_close(v, states[1][k], rtol=0, atol=0, msg=k)
    assert json.loads((run / "model.json").read_text())["best_epoch"] == 1


def test_min_epochs_never_keeps_an_untrained_fluke(tiny_cache, tmp_path, monkeypatch):
    # Validation AUROC a small split gives, by epoch: a fluke after the first, then learning.
    curve = [0.9, 0.5, 0.55, 0.6, 0.7, 0.65, 0.66, 0.64, 0.63]
    for min_epochs, best, trained in ((0, 0, 3), (2, 4, 7)):
        aurocs, states = iter(curve[min_epochs:]), []

        def fake_validate(model, *args):
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            return 1.0, next(aurocs)

        monkeypatch.setattr(ft, "validate", fake_validate)
        run = finetune(tiny_cfg(tiny_cache, tmp_path / f"m{min_epochs}", epochs=9, patience=2,
                                select_on="val_auroc", min_epochs=min_epochs))
        # Without min_epochs the fluke is kept and two worse epochs end the run; with it, the
        # epochs before min_epochs are trained but neither validated nor counted: epoch 4 is
        # kept and the 2 epochs after it stop the run.
        rows = JsonlLog(run / "log.jsonl").rows()
        assert [r["epoch"] for r in rows] == list(range(trained))
        assert [r["epoch"] for r in rows if "val_auroc" in r] == list(range(min_epochs, trained))
        assert len(states) == trained - min_epochs
        assert json.loads((run / "model.json").read_text())["best_epoch"] == best
        saved = torch.load(run / "model.pt", weights_only=True)
        for k, v in saved.items():
            torch.testing.assert_close(v, states[best - min_epochs][k], rtol=0, atol=0, msg=k)


def test_lr_grid_keeps_the_lr_whose_kept_epoch_validates_best(tiny_cache, tmp_path, monkeypatch):
    # (val_loss, val_auroc) by epoch. lr 0.01 keeps epoch 1 (AUROC 0.7); its lowest loss is at
    # epoch 0 (AUROC 0.6). lr 0.001 keeps epoch 0 (0.65). The kept models compare 0.7 > 0.65.
    curves = {0.01: iter([(0.5, 0.6), (0.9, 0.7)]), 0.001: iter([(0.8, 0.65), (0.8, 0.65)])}
    monkeypatch.setattr(ft, "validate", lambda model, cache, val, cfg, *a: next(curves[cfg.lr]))
    run = finetune(tiny_cfg(tiny_cache, tmp_path / "grid", epochs=2, select_on="val_auroc",
                            lr_grid=(0.01, 0.001)))
    config = json.loads((run / "config.json").read_text())
    assert config["chosen_lr"] == 0.01
    assert config["grid_scores"] == {"0.01": 0.7, "0.001": 0.65}
    kept = json.loads((run / "model.json").read_text())
    assert kept["best_epoch"] == 1 and kept["finetune_config"]["lr"] == 0.01
    for name in ("model.pt", "model.json"):  # the chosen run's model is the run's model
        assert (run / name).read_bytes() == (run / "lr_0.01" / name).read_bytes()


def test_min_epochs_must_leave_an_epoch_to_keep(tiny_cache, tmp_path):
    with pytest.raises(UserError, match="--min-epochs 3: .* below --epochs \\(3\\)"):
        finetune(tiny_cfg(tiny_cache, tmp_path / "ft", epochs=3, min_epochs=3))
    assert not (tmp_path / "ft").exists()  # refused before anything was written


def test_training_loss_is_class_weighted_and_label_smoothed(tiny_cache, tmp_path, monkeypatch):
    calls = []
    loss_fn = finetuning.smoothed_bce

    def spy(logits, labels, **kw):
        loss = loss_fn(logits, labels, **kw)
        if logits.requires_grad:  # a training step (validation runs without gradients)
            calls.append((logits.detach().double(), labels.double(), loss.item()))
        return loss

    monkeypatch.setattr(finetuning, "smoothed_bce", spy)
    run = finetune(tiny_cfg(tiny_cache, tmp_path / "ft", task="severe_as", epochs=1))
    labels = train_studies(tiny_cache, "severe_as")
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    assert (n_pos, n_neg) == (4, 8)  # unbalanced, so the class weight matters
    steps = JsonlLog(run / "log.jsonl").rows()[-1]["step"]
    assert len(calls) == steps > 0
    for logits, y, loss in calls:
        target = y * 0.9 + 0.05  # label smoothing 0.1
        log_p, log_not_p = torch.nn.functional.logsigmoid(logits), \
            torch.nn.functional.logsigmoid(-logits)
        by_hand = -(n_neg / n_pos * target * log_p + (1 - target) * log_not_p).mean().item()
        assert loss == pytest.approx(by_hand, rel=1e-5)
    train_loss = JsonlLog(run / "log.jsonl").rows()[0]["train_loss"]
    assert train_loss == pytest.approx(np.mean([c[2] for c in calls]), rel=1e-6)
