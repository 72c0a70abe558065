"""Echo view classification from a few labeled videos: a multinomial probe on frozen features.

The multi-class sibling of :mod:`echoclr.probe`. Each video's clip-averaged encoder feature
``h`` is one sample (views belong to videos, not studies); an L2 multinomial logistic regression,
classes balanced, is fitted on the labeled videos with C chosen by stratified cross-validation
grouped by study (two videos of one study never sit on both sides of a fold). The
standardisation is folded into the weights, so the model is one ``Linear(F, n_views)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from echoclr.class_metrics import evaluate_classes
from echoclr.probe import C_GRID, fit_logistic, select_c


@dataclass(frozen=True)
class ViewModel:
    """A fitted view classifier on raw features: ``logits = features @ weight.T + bias``."""

    views: tuple[str, ...]  # (V,) class names, sorted
    weight: np.ndarray  # (V, F) float64, standardisation folded in
    bias: np.ndarray  # (V,)
    c: float  # chosen inverse L2 strength
    cv_macro_auroc: float | None  # out-of-fold macro AUROC at ``c`` (None: no cross-validation)
    cv_folds: int
    cv_grid: dict = field(default_factory=dict)  # {c: out-of-fold macro AUROC}

    def proba(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features → (N, V) view probabilities (rows sum to 1)."""
        logits = np.asarray(features, dtype=np.float64) @ self.weight.T + self.bias
        return softmax(logits, axis=1)


def _fit(x: np.ndarray, y: np.ndarray, c: float, n_views: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~echoclr.probe.fit_logistic` with one logit row per view: (weight (V, F),
    bias (V,)) on raw features; ``y`` in 0..V-1."""
    weight, bias = fit_logistic(x, y, c)
    if n_views == 2:  # one row for two classes: the softmax of (-z/2, z/2) is the sigmoid of z
        return np.vstack([-weight[0] / 2, weight[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return weight, bias


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the views present in ``y`` (int (N,), probabilities (N, V))."""
    present = np.unique(y)
    return float(np.mean([roc_auc_score(y == k, proba[:, k]) for k in present]))


def fit_view_model(features: np.ndarray, views: np.ndarray, groups: np.ndarray, *,
                   cs: tuple[float, ...] = C_GRID, folds: int = 5, seed: int = 0) -> ViewModel:
    """Fit the view classifier, choosing C by grouped, stratified cross-validation.

    Args:
        features: (N, F) one row per labeled video (its clip-averaged ``h``).
        views: (N,) view names; at least two views, each on two or more videos.
        groups: (N,) study of each video; folds never split a study.
        cs: candidate inverse L2 strengths; the best out-of-fold macro AUROC wins, ties go to
            the smaller C.
        folds: at most this many folds (fewer when a view has fewer studies).
        seed: shuffles the fold assignment.
    """
    x = np.asarray(features, dtype=np.float64)
    names = np.asarray(views).astype(str)
    groups = np.asarray(groups).astype(str)
    classes = tuple(sorted(str(v) for v in set(names)))
    if x.ndim != 2 or len(x) != len(names) or len(names) != len(groups):
        raise ValueError(f"fit_view_model: features {x.shape}, views {names.shape}, "
                         f"groups {groups.shape}")
    counts = {v: int((names == v).sum()) for v in classes}
    if len(classes) < 2 or min(counts.values()) < 2:
        raise ValueError(f"fit_view_model needs two or more views with at least 2 videos each, "
                         f"got {counts}")
    y = np.searchsorted(classes, names)
    n_views = len(classes)
    chosen, grid, k = select_c(
        x, y, groups, fit=lambda xs, ys, c: _fit(xs, ys, c, n_views), cs=cs, folds=folds,
        seed=seed, score=lambda y_true, oof: macro_auroc(y_true, softmax(oof, axis=1)))
    weight, bias = _fit(x, y, chosen, n_views)
    return ViewModel(classes, weight, bias, chosen, grid.get(chosen), k, grid)


def view_metrics(views: tuple[str, ...], true: np.ndarray, proba: np.ndarray) -> dict:
    """Per-view and macro one-vs-rest AUROC, accuracy and the confusion matrix (rows: true view,
    columns: predicted, in ``views`` order) of labeled videos; ``true`` (N,) view names,
    ``proba`` (N, V). Views absent from ``true`` get no AUROC. The point figures of
    :func:`echoclr.class_metrics.evaluate_classes`, without intervals."""
    true = np.asarray(true).astype(str)
    unknown = sorted(str(v) for v in set(true) - set(views))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's views {list(views)}")
    found = evaluate_classes(np.searchsorted(views, true), proba, tuple(views), n_resamples=0)
    return {"n_videos": found["n"],
            "per_view_auroc": {v: found["per_class"][v]["value"] for v in views},
            "macro_auroc": found["macro_auroc"]["value"], "accuracy": found["accuracy"],
            "confusion": found["confusion"], "views": list(views)}
