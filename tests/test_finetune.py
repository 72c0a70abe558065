"""Fine-tuning: the loss, exact early stopping, strict encoder loading, a smoke run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from _model_fixtures import crash_after_epoch
from echoclr.commands.finetune import FinetuneConfig, build_classifier, finetune
from echoclr.finetuning import EarlyStopping
from echoclr.losses import smoothed_bce
from echoclr.models import build_encoder
from echoclr.runs import JsonlLog
from echoclr.weights import save_encoder


def test_smoothed_bce_applies_smoothing_and_class_weight():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 0.0, 1.0])
    got = smoothed_bce(logits, labels, pos_weight=3.0, smoothing=0.1)
    targets = torch.tensor([0.95, 0.05, 0.95])
    p = torch.sigmoid(logits)
    by_hand = -(3.0 * targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    plain = F.binary_cross_entropy_with_logits(logits, labels)
    assert smoothed_bce(logits, labels, pos_weight=1.0, smoothing=0.0).item() == pytest.approx(
        plain.item())


def test_early_stopping_after_exactly_patience_bad_epochs():
    stopper = EarlyStopping(patience=3)
    history = [1.0, 0.8, 0.85, 0.9, 0.79, 0.8, 0.81, 0.82, 0.5]
    stopped_at = None
    for epoch, loss in enumerate(history):
        stopper.update(epoch, loss)
        if stopper.should_stop:
            stopped_at = epoch
            break
    assert stopper.best_epoch == 4 and stopper.best == 0.79
    assert stopped_at == 7  # epochs 5, 6, 7 without improvement: stop right there


def test_early_stopping_counts_nothing_before_its_start():
    stopper = EarlyStopping(patience=2, start=3)
    for epoch, auroc in enumerate([0.95, 0.5, 0.6]):  # the epochs before start
        assert stopper.update(epoch, -auroc) is False
    assert (stopper.best_epoch, stopper.bad_epochs, stopper.should_stop) == (-1, 0, False)
    assert stopper.update(3, -0.7) is True and stopper.best_epoch == 3  # worse than the fluke
    assert stopper.update(4, -0.6) is False and stopper.update(5, -0.65) is False
    assert stopper.should_stop and stopper.best == -0.7


def test_strict_loading_rejects_a_mismatched_encoder(tmp_path):
    wide = build_encoder("r3d_tiny", width=8)
    path = tmp_path / "encoder.pt"
    save_encoder(wide, path, {"encoder": "r3d_tiny", "width": 4})  # sidecar lies about width
    cfg = FinetuneConfig(init=str(path))
    with pytest.raises(ValueError, match="shape mismatches: \\[layers.0.bn1.bias"):
        build_classifier(cfg)
    state = wide.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    (tmp_path / "encoder.json").write_text(json.dumps({"encoder": "r3d_tiny", "width": 8}))
    with pytest.raises(ValueError, match="unexpected keys: \\[extra.weight\\]"):
        build_classifier(cfg)


def test_pretrained_weights_really_load(tmp_path):
    enc = build_encoder("r3d_tiny", width=4)
    torch.nn.init.constant_(enc.stem[0].weight, 0.123)
    save_encoder(enc, tmp_path / "encoder.pt", {"encoder": "r3d_tiny", "width": 4})
    model, _ = build_classifier(FinetuneConfig(init=str(tmp_path / "encoder.pt")))
    assert torch.all(model.encoder.stem[0].weight == 0.123)


def test_kinetics_init_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="r3d_18-b3b3357e.pth"):
        build_classifier(FinetuneConfig(init="kinetics", encoder="r3d_18"))


def test_kinetics_init_loads_a_local_file(tmp_path):
    from torchvision.models.video import r3d_18

    ref = r3d_18()
    torch.save(ref.state_dict(), tmp_path / "k400.pth")
    model, _ = build_classifier(FinetuneConfig(init="kinetics", weights=str(tmp_path / "k400.pth")))
    torch.testing.assert_close(model.encoder.stem[0].weight, ref.stem[0].weight)


def test_finetune_smoke_run_with_patience(tiny_cache, tmp_path):
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, batch_size=4, epochs=4,
                         patience=1, workers=0, progress=False, eval_clips=2)
    run = finetune(cfg)
    rows = JsonlLog(run / "log.jsonl").rows()
    meta = json.loads((run / "model.json").read_text())
    best = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])
    assert meta["best_epoch"] == best
    # Stopped after exactly `patience` non-improving epochs, or ran out of epochs.
    assert len(rows) == min(cfg.epochs, best + 1 + cfg.patience)
    assert (run / "model.pt").is_file() and (run / "config.json").is_file()


def test_diverged_run_says_so_instead_of_crashing(tiny_cache, tmp_path, monkeypatch):
    import echoclr.commands.finetune as ft

    monkeypatch.setattr(ft, "validate", lambda *a, **k: (float("nan"), float("nan")))
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, batch_size=4, epochs=2,
                         patience=1, workers=0, progress=False)
    with pytest.raises(RuntimeError, match="NaN in every epoch"):
        finetune(cfg)
    assert not (tmp_path / "ft" / "model.pt").exists()


@pytest.mark.parametrize("head_epochs", [0, 3], ids=["full", "head-only-then-full"])
def test_resume_after_a_crash_ends_with_the_uninterrupted_model(tiny_cache, tmp_path,
                                                                monkeypatch, head_epochs):
    """Killed after epoch 1 (its checkpoint written), --resume continues at epoch 2 and ends
    with the model an uninterrupted run ends with: weights, early stopping, dropout's RNG, the
    shuffle and augmentation generator, and the optimizer (frozen or not) all carry over."""
    import dataclasses

    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "run"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, batch_size=6, epochs=4,
                         patience=5, head_epochs=head_epochs, workers=0, progress=False,
                         val_clips=1, precision="fp32")
    crash_after_epoch(cfg, monkeypatch, 1)
    resumed = finetune(dataclasses.replace(cfg, resume=True))
    reference = finetune(dataclasses.replace(cfg, out=str(tmp_path / "ref")))
    a = torch.load(resumed / "model.pt", weights_only=True)
    b = torch.load(reference / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in b:
        assert torch.equal(a[key], b[key]), key
    assert [r["epoch"] for r in JsonlLog(resumed / "log.jsonl").rows()] == [0, 1, 2, 3]
    rows = [{k: v for k, v in r.items() if k != "time"} for r in JsonlLog(resumed /
                                                                           "log.jsonl").rows()]
    assert rows == [{k: v for k, v in r.items() if k != "time"}
                    for r in JsonlLog(reference / "log.jsonl").rows()]
    assert not (resumed / "checkpoint.pt").exists()  # removed once model.pt is written


def test_resume_with_other_settings_is_refused(tiny_cache, tmp_path, monkeypatch):
    import dataclasses

    from echoclr.errors import UserError

    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "run"), task="lvh",
                         encoder="r3d_tiny", width=4, clip_len=4, batch_size=6, epochs=3,
                         workers=0, progress=False, val_clips=1, precision="fp32")
    crash_after_epoch(cfg, monkeypatch, 0)
    with pytest.raises(UserError, match=r"checkpoint.pt.*lr.*0\.0001.*0\.01.*--resume"):
        finetune(dataclasses.replace(cfg, resume=True, lr=0.01))
