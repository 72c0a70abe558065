"""Echo views from a few labeled videos: the multinomial probe against scikit-learn, its metrics
against sklearn's multi-class AUROC, and ``echoclr views`` on a synthetic cohort of three views
(PLAX, A4C, A2C) filling the cache's ``view`` column for ``--view PLAX``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from echoclr.cli import main
from echoclr.data.cache import VideoCache
from echoclr.view_model import _fit, fit_view_model, view_metrics


def blobs(n_per_view: int, views=("A2C", "A4C", "PLAX"), dim: int = 6, sep: float = 3.0,
          seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, size=(len(views), dim))
    x = np.concatenate([c + rng.normal(size=(n_per_view, dim)) for c in centres])
    names = np.repeat(views, n_per_view)
    groups = np.array([f"S{k // 2}" for k in range(len(x))])  # two videos per study
    return x, names, groups


@pytest.mark.parametrize("n_views", [2, 3])
def test_folded_fit_gives_sklearns_probabilities(n_views):
    x, names, _ = blobs(15, views=("A2C", "A4C", "PLAX")[:n_views], sep=1.0)
    y = np.searchsorted(sorted(set(names)), names)
    weight, bias = _fit(x, y, 0.1, n_views)
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)
    reference.fit(scaler.transform(x), y)
    from scipy.special import softmax

    np.testing.assert_allclose(softmax(x @ weight.T + bias, axis=1),
                               reference.predict_proba(scaler.transform(x)), atol=1e-8)


def test_view_metrics_match_sklearn_and_count_the_confusion():
    rng = np.random.default_rng(1)
    views = ("A2C", "A4C", "PLAX")
    true = rng.choice(views, size=60)
    proba = rng.dirichlet(np.ones(3), size=60)
    proba[np.arange(60), np.searchsorted(views, true)] += 0.3  # some signal
    proba /= proba.sum(axis=1, keepdims=True)
    m = view_metrics(views, true, proba)
    y = np.searchsorted(views, true)
    assert m["macro_auroc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr",
                                                           average="macro"))
    for k, v in enumerate(views):
        assert m["per_view_auroc"][v] == pytest.approx(roc_auc_score(y == k, proba[:, k]))
    confusion = np.array(m["confusion"])
    assert confusion.sum() == 60 and confusion[0, 0] == np.sum((y == 0) & (proba.argmax(1) == 0))
    assert np.array_equal(confusion.sum(axis=1), np.bincount(y, minlength=3))  # rows: true
    assert m["accuracy"] == pytest.approx(np.trace(confusion) / 60)


def test_separable_views_are_learned_from_five_videos_each():
    x, names, groups = blobs(5)
    model = fit_view_model(x, names, groups, folds=5)
    assert model.views == ("A2C", "A4C", "PLAX") and model.cv_folds == 3  # 3 studies a view
    test_x, test_names, _ = blobs(40, seed=0)  # the same centres, new videos
    m = view_metrics(model.views, test_names, model.proba(test_x))
    assert m["macro_auroc"] > 0.95 and m["accuracy"] > 0.85
    rng = np.random.default_rng(3)  # features without signal: chance on new videos
    chance = fit_view_model(rng.normal(size=x.shape), names, groups)
    m = view_metrics(model.views, test_names, chance.proba(rng.normal(size=test_x.shape)))
    assert abs(m["macro_auroc"] - 0.5) < 0.12


def test_one_view_or_one_video_per_view_is_refused():
    x, names, groups = blobs(3)
    with pytest.raises(ValueError, match="two or more views"):
        fit_view_model(x[:3], names[:3], groups[:3])
    with pytest.raises(ValueError, match="at least 2 videos"):
        fit_view_model(x[2:], names[2:], groups[2:])  # A2C keeps one video


def test_views_command_fills_the_view_column_from_a_few_labels(three_view_cache, tmp_path):
    cache = three_view_cache
    truth = VideoCache(cache).rows()
    assert set(truth["view"]) == {"PLAX", "A4C", "A2C"}
    run = tmp_path / "views"
    assert main(["views", str(cache), "--out", str(run), "--encoder", "r3d_tiny", "--width", "4",
                 "--per-view", "3", "--clips", "1", "--write-manifest", "--device", "cpu",
                 "--precision", "fp32"]) == 0
    predictions = pd.read_csv(run / "view_predictions.csv")
    assert predictions.groupby("view_label")["fitted"].sum().to_dict() == \
        {"A2C": 3, "A4C": 3, "PLAX": 3}
    assert not predictions.loc[predictions.fitted, "split"].ne("train").any()
    metrics = json.loads((run / "metrics.json").read_text())
    held = predictions[~predictions.fitted & predictions.split.isin(["val", "test"])]
    assert metrics["n_videos"] == len(held) and metrics["views"] == ["A2C", "A4C", "PLAX"]
    p = held[[f"p_{v}" for v in metrics["views"]]].to_numpy()
    assert metrics["macro_auroc"] == pytest.approx(
        roc_auc_score(np.searchsorted(metrics["views"], held.view_label), p, multi_class="ovr"))
    state = torch.load(run / "view_model.pt", weights_only=True)
    assert state["weight"].shape == (3, 32) and state["bias"].shape == (3,)

    updated = VideoCache(cache).rows()
    assert (updated["view_given"] == truth["view"]).all()  # nothing lost
    fitted = predictions.fitted.to_numpy()
    assert (updated["view"][fitted] == truth["view"][fitted]).all()
    assert (updated["view"][~fitted] == predictions.view_pred[~fitted]).all()
    assert set(updated["view_from"]) == {"label", "model"}
    from echoclr.data.manifest import label_columns  # the added columns are no labels

    assert label_columns(updated) == label_columns(truth) == ["lvh", "severe_as"]
    plax = VideoCache(cache).rows(view="PLAX")
    assert len(plax) == int((updated["view"] == "PLAX").sum())

    # run again: the labels come from view_given, not from the first run's predictions
    assert main(["views", str(cache), "--out", str(tmp_path / "again"), "--encoder",
                 "r3d_tiny", "--width", "4", "--per-view", "3", "--clips", "1", "--device",
                 "cpu", "--precision", "fp32"]) == 0
    again = pd.read_csv(tmp_path / "again" / "view_predictions.csv")
    assert (again["view_label"] == truth["view"].str.upper()).all()


def test_views_without_labels_is_one_line(three_view_cache, tmp_path, capsys):
    assert main(["views", str(three_view_cache), "--out", str(tmp_path / "v"),
                 "--label-column", "echo_view", "--encoder", "r3d_tiny", "--width", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "no column 'echo_view'" in err and "manifest.csv" in err


def independent_grid(x, names, groups, k, seed, cs):
    """Out-of-fold macro AUROC per C from scikit-learn alone (pipeline, predict_proba)."""
    from sklearn.model_selection import StratifiedGroupKFold

    classes = sorted(set(names))
    y = np.searchsorted(classes, names)
    grid = {}
    for c in cs:
        oof = np.zeros((len(y), len(classes)))
        for train, held in StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(
                x, y, groups):
            oof[held] = make_refit(x[train], y[train], c).predict_proba(x[held])
        grid[c] = (roc_auc_score(y, oof[:, 1]) if len(classes) == 2 else
                   roc_auc_score(y, oof, multi_class="ovr", average="macro"))
    return grid


@pytest.mark.parametrize("views, counts, seed", [(("A4C", "PLAX"), (6, 14), 0),
                                                 (("A2C", "A4C", "PLAX"), (5, 9, 16), 4)])
def test_c_is_the_best_cross_validated_macro_auroc_and_the_refit_is_sklearns(views, counts,
                                                                           seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.6, size=(len(views), 5))  # overlapping: C matters
    x = np.concatenate([c + rng.normal(size=(n, 5)) for c, n in zip(centres, counts)])
    names = np.repeat(views, counts)
    groups = np.array([f"S{k // 2}" for k in range(len(x))])
    cs = (1e-3, 1e-2, 1e-1, 1.0)
    model = fit_view_model(x, names, groups, cs=cs, folds=3, seed=seed)
    want = independent_grid(x, names, groups, 3, seed, cs)
    assert model.cv_grid == pytest.approx(want) and model.cv_folds == 3
    best = max(want.values())
    assert model.c == min(c for c, v in want.items() if v >= best - 1e-12)
    assert model.cv_macro_auroc == pytest.approx(want[model.c])
    y = np.searchsorted(sorted(views), names)
    refit = make_refit(x, y, model.c)
    np.testing.assert_allclose(model.proba(x), refit.predict_proba(x), atol=1e-7)


def make_refit(x, y, c):
    from sklearn.pipeline import make_pipeline

    return make_pipeline(StandardScaler(), LogisticRegression(
        C=c, class_weight="balanced", max_iter=5000)).fit(x, y)


def test_views_on_single_studies_fall_back_to_the_default_c():
    from echoclr.probe import DEFAULT_C

    x, names, _ = blobs(3, sep=1.0)
    groups = np.array(["S_a"] * 3 + ["S_b"] * 3 + ["S_c"] * 3)  # each view one study
    model = fit_view_model(x, names, groups)
    assert (model.c, model.cv_macro_auroc, model.cv_folds, model.cv_grid) == \
        (DEFAULT_C, None, 0, {})
    y = np.searchsorted(model.views, names)
    np.testing.assert_allclose(model.proba(x), make_refit(x, y, DEFAULT_C).predict_proba(x),
                               atol=1e-7)


def test_view_metrics_leave_out_views_that_were_not_held_out():
    views = ("A2C", "A4C", "PLAX")
    proba = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    m = view_metrics(views, np.array(["PLAX", "A4C", "A4C", "PLAX"]), proba)
    assert m["per_view_auroc"]["A2C"] is None  # no A2C video: no AUROC, not in the macro
    assert m["per_view_auroc"]["A4C"] == pytest.approx(roc_auc_score([0, 1, 1, 0], proba[:, 1]))
    assert m["macro_auroc"] == pytest.approx(np.mean([m["per_view_auroc"]["A4C"],
                                                      m["per_view_auroc"]["PLAX"]]))
    assert m["confusion"] == [[0, 0, 0], [0, 1, 1], [1, 0, 1]] and m["n_videos"] == 4
    only = view_metrics(views, np.array(["PLAX", "PLAX"]), proba[:2])
    assert only["per_view_auroc"] == {"A2C": None, "A4C": None, "PLAX": None}
    assert only["macro_auroc"] is None and only["accuracy"] == 0.5
    empty = view_metrics(views, np.array([], dtype=str), np.zeros((0, 3)))
    assert empty["macro_auroc"] is None and empty["accuracy"] is None
    assert empty["confusion"] == [[0, 0, 0]] * 3 and empty["views"] == list(views)
    with pytest.raises(ValueError, match=r"labels \['PSAX'\] are not among the model's views"):
        view_metrics(views, np.array(["PSAX", "PLAX"]), proba[:2])


def test_inputs_that_do_not_line_up_are_refused():
    x, names, groups = blobs(3)
    with pytest.raises(ValueError, match="features"):
        fit_view_model(x[:-1], names, groups)
    with pytest.raises(ValueError, match="groups"):
        fit_view_model(x, names, groups[:-1])
    with pytest.raises(ValueError, match="features"):
        fit_view_model(x[:, 0], names, groups)
    two = fit_view_model(x[3:], names[3:], groups[3:])  # two views of 3 videos: enough
    assert two.views == ("A4C", "PLAX")
