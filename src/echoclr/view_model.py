"""Echo view classification from a few labeled videos: a multinomial probe on frozen features.

The multi-class sibling of :mod:`echoclr.probe`. Each video's clip-averaged encoder feature
``h`` is one sample (views belong to videos, not studies); an L2 multinomial logistic regression,
classes balanced, is fitted on the labeled videos with C chosen by stratified cross-validation
grouped by study (two videos of one study never sit on both sides of a fold). The
standardisation is folded into the weights, so the model is one ``Linear(F, n_views)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from echoclr.probe import C_GRID, DEFAULT_C


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
    """Standardise, fit, fold: (weight (V, F), bias (V,)) on raw features; ``y`` in 0..V-1."""
    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings():  # strong regularisation converges slowly; it is fine here
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        model.fit(scaler.transform(x), y)
    if n_views == 2:  # sklearn keeps one row for two classes: the softmax of (-z/2, z/2)
        coef = np.vstack([-model.coef_[0] / 2, model.coef_[0] / 2])
        intercept = np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
    else:
        coef, intercept = model.coef_, model.intercept_
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
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
    k = min(folds, *(len(np.unique(groups[y == i])) for i in range(len(classes))))
    if k < 2:
        weight, bias = _fit(x, y, DEFAULT_C, len(classes))
        return ViewModel(classes, weight, bias, DEFAULT_C, None, 0)
    splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                  .split(x, y, groups))
    grid = {}
    for c in cs:
        oof = np.empty((len(y), len(classes)))
        for train, held in splits:
            weight, bias = _fit(x[train], y[train], c, len(classes))
            oof[held] = x[held] @ weight.T + bias
        grid[float(c)] = macro_auroc(y, softmax(oof, axis=1))
    best = max(grid.values())
    chosen = min(c for c, score in grid.items() if score >= best - 1e-12)
    weight, bias = _fit(x, y, chosen, len(classes))
    return ViewModel(classes, weight, bias, chosen, grid[chosen], k, grid)


def view_metrics(views: tuple[str, ...], true: np.ndarray, proba: np.ndarray) -> dict:
    """Per-view and macro one-vs-rest AUROC, accuracy and the confusion matrix (rows: true view,
    columns: predicted, in ``views`` order) of labeled videos; ``true`` (N,) view names,
    ``proba`` (N, V). Views absent from ``true`` get no AUROC."""
    true = np.asarray(true).astype(str)
    unknown = sorted(str(v) for v in set(true) - set(views))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's views {list(views)}")
    y = np.searchsorted(views, true)
    predicted = proba.argmax(axis=1)
    per_view = {v: (float(roc_auc_score(y == k, proba[:, k]))
                    if 0 < (y == k).sum() < len(y) else None) for k, v in enumerate(views)}
    scored = [a for a in per_view.values() if a is not None]
    return {"n_videos": int(len(y)), "per_view_auroc": per_view,
            "macro_auroc": float(np.mean(scored)) if scored else None,
            "accuracy": float((predicted == y).mean()) if len(y) else None,
            "confusion": (confusion_matrix(y, predicted, labels=range(len(views))) if len(y)
                          else np.zeros((len(views), len(views)), int)).tolist(),
            "views": list(views)}
