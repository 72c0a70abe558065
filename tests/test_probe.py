"""The probe readout: its fit against scikit-learn, C chosen by cross-validation on the drawn
training studies only, a run folder that evaluate/compare/predict/embed take as a fine-tuned
one, the experiment's feature path equal to evaluate's forward pass, and LP-FT's head."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import echoclr.commands.probe as probe_command
from _video_fixtures import echo_frames
from echoclr.cli import main
from echoclr.commands.embed import EmbedConfig, embed
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.predict import PredictConfig, predict
from echoclr.commands.probe import ProbeConfig, probe, probe_predictions
from echoclr.data.cache import VideoCache
from echoclr.data.manifest import label_fraction_studies
from echoclr.data.video import write_video
from echoclr.models import build_encoder
from echoclr.probe import fit_probe
from echoclr.weights import load_classifier, save_encoder


def signal_data(seed=0, n_patients=40, per_patient=2, dim=12):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_patients), per_patient).astype(str)
    y = np.repeat(rng.integers(0, 2, n_patients), per_patient)
    x = rng.normal(size=(len(y), dim)) * rng.uniform(0.5, 3, dim) + rng.normal(size=dim)
    x[:, 0] += 1.2 * y
    return x, y, groups


def test_probe_is_sklearns_balanced_logistic_regression_on_standardised_features():
    x, y, groups = signal_data()
    fit = fit_probe(x, y, groups, cs=(0.3,))
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.3,
                                                                   class_weight="balanced"))
    reference.fit(x, y)
    np.testing.assert_allclose(fit.logits(x), reference.decision_function(x), atol=1e-5)


def test_c_is_the_best_grouped_cross_validated_auroc():
    x, y, groups = signal_data(seed=1)
    cs = (1e-3, 1e-2, 1e-1, 1.0)
    fit = fit_probe(x, y, groups, cs=cs, folds=4, seed=3)
    folds = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=3)
    expected = {}
    for c in cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced"))
        oof = cross_val_predict(model, x, y, groups=groups, cv=folds,
                                method="decision_function")
        expected[c] = roc_auc_score(y, oof)
    assert fit.cv_folds == 4
    np.testing.assert_allclose([fit.cv_grid[c] for c in cs], [expected[c] for c in cs],
                               atol=1e-6)
    assert fit.c == max(cs, key=lambda c: (expected[c], -c))


def test_too_few_studies_of_a_class_fall_back_to_the_default_c():
    x, y, groups = signal_data(n_patients=8, per_patient=1)
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    fit = fit_probe(x, y, groups)
    assert fit.cv_folds == 0 and fit.cv_auroc is None
    with pytest.raises(ValueError, match="both classes"):
        fit_probe(x, np.zeros(8, int), groups)


def probe_cfg(cache, out, **kw):
    base = dict(cache=str(cache), out=str(out), task="lvh", init="random", encoder="r3d_tiny",
                width=4, clip_len=4, period=1, clips=2, precision="fp32", device="cpu",
                folds=3)
    return ProbeConfig(**(base | kw))


def test_cross_validation_sees_only_the_drawn_training_studies(tiny_cache, tmp_path,
                                                              monkeypatch):
    seen = {}

    def spy(x, y, groups, **kw):
        seen.update(groups=list(groups), n=len(y))
        return fit_probe(x, y, groups, **kw)

    monkeypatch.setattr(probe_command, "fit_probe", spy)
    probe(probe_cfg(tiny_cache, tmp_path / "p", fraction=0.5, fraction_seed=2))
    manifest = pd.read_csv(tiny_cache / "manifest.csv")
    drawn = label_fraction_studies(manifest, label="lvh", fractions=[0.5], seed=2)[0.5]
    patients = set(manifest.loc[manifest["study_id"].isin(drawn), "patient_id"])
    assert set(seen["groups"]) == patients and seen["n"] == len(drawn)
    held_out = set(manifest.loc[manifest["split"] != "train", "patient_id"])
    assert not held_out & set(seen["groups"])


@pytest.fixture
def probe_run(tiny_cache, tmp_path):
    return probe(probe_cfg(tiny_cache, tmp_path / "probe", features=str(tmp_path / "store")))


def test_probe_run_folder_is_a_model_every_command_takes(probe_run, tiny_cache, tmp_path):
    state = torch.load(probe_run / "model.pt", weights_only=True)
    assert "head.weight" in state
    meta = json.loads((probe_run / "model.json").read_text())
    assert meta["readout"] == "probe" and meta["dropout"] == 0.0
    result = evaluate_run(EvaluateConfig(run=str(probe_run), clips=2, n_resamples=50,
                                         precision="fp32", device="cpu"))
    assert result["readout"] == "probe" and 0 <= result["study"]["auroc"]["value"] <= 1
    other = probe(probe_cfg(tiny_cache, tmp_path / "probe2", fraction=0.5))
    evaluate_run(EvaluateConfig(run=str(other), clips=2, n_resamples=50, precision="fp32"))
    assert main(["compare", str(probe_run), str(other), "--n-resamples", "50"]) == 0
    embedded = embed(EmbedConfig(model=str(probe_run), cache=str(tiny_cache),
                                 out=str(tmp_path / "e.npz"), clips=2, precision="fp32"))
    assert np.load(embedded)["h"].shape[1] == 32  # r3d_tiny width 4: 8 x 4 features
    video = tmp_path / "new" / "v.avi"
    video.parent.mkdir()
    write_video(video, echo_frames(t=10, h=32, w=40)[0], fps=30)
    out = predict(PredictConfig(model=str(probe_run), inputs=(str(video),),
                                out=str(tmp_path / "p.csv"), precision="fp32", device="cpu"))
    assert pd.read_csv(out)["status"].eq("ok").all()


def test_features_path_equals_evaluates_forward_pass(probe_run, tiny_cache, tmp_path):
    cache = VideoCache(tiny_cache)
    rows = cache.rows("test", "PLAX")
    fast = probe_predictions(probe_run, cache, rows, label="lvh", clips=2,
                             store=tmp_path / "store", precision="fp32")
    evaluate_run(EvaluateConfig(run=str(probe_run), clips=2, n_resamples=20, precision="fp32",
                                plots=False))
    slow = pd.read_csv(probe_run / "predictions.csv")
    assert fast["y_score"].std() > 1e-4  # scores that differ, so equality means something
    np.testing.assert_allclose(fast["y_score"], slow["y_score"], atol=1e-5)
    assert len(list((tmp_path / "store").glob("*.npz"))) == 1  # one encoder, computed once


def pretrained_encoder(path, cache):
    path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    encoder = build_encoder("r3d_tiny", width=4)
    config = json.loads((cache / "ingest_config.json").read_text())
    save_encoder(encoder, path, {"encoder": "r3d_tiny", "width": 4, "method": "echoclr",
                                 "clip_len": 4, "period": 1, "preprocessing": config})
    return path


def test_lpft_starts_from_the_probes_head(tiny_cache, tmp_path):
    encoder = pretrained_encoder(tmp_path / "enc" / "encoder.pt", tiny_cache)
    head = probe(probe_cfg(tiny_cache, tmp_path / "probe", init=str(encoder)))
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "lpft"), task="lvh",
                         init=str(encoder), head_init=str(head), clip_len=4, batch_size=12,
                         epochs=1, lr=0.0, workers=0, progress=False, val_clips=1,
                         precision="fp32", device="cpu")
    run = finetune(cfg)  # lr 0: nothing moves, so the model is its starting point
    tuned, meta = load_classifier(run)
    fitted, _ = load_classifier(head)
    assert meta["readout"] == "lpft"
    torch.testing.assert_close(tuned.head.weight, fitted.head.weight)
    torch.testing.assert_close(tuned.head.bias, fitted.head.bias)
    assert torch.count_nonzero(fitted.head.weight) > 0
    with pytest.raises(ValueError, match="fitted on init"):
        finetune(FinetuneConfig(**(vars(cfg) | {"init": str(pretrained_encoder(
            tmp_path / "other" / "encoder.pt", tiny_cache)), "out": str(tmp_path / "x")})))
    with pytest.raises(ValueError, match="random init"):
        finetune(FinetuneConfig(**(vars(cfg) | {"init": "random", "out": str(tmp_path / "y")})))
