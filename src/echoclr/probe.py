"""The probe readout: an L2 logistic regression on frozen, clip-averaged encoder features.

Fitted on the study features (the mean over a study's videos of their clip-averaged ``h``) of
the labeled training studies, classes balanced, with its inverse regularisation strength C chosen
by stratified cross-validation grouped by patient — on those studies only, never validation or
test. The standardisation is folded into the weights, so the probe is one ``Linear(F, 1)`` on
raw features: the head of a :class:`~echoclr.models.Classifier`, scored like any other. LP-FT
(Kumar et al., ICLR 2022) starts fine-tuning from this head. :func:`fit_logistic` and
:func:`select_c` also serve the echo-view classifier (:mod:`echoclr.view_model`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler

from echoclr.metrics import auroc

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # inverse L2 strengths searched (decades; larger C
# fits separable standardised features to machine precision, slowly, and only overfits)
DEFAULT_C = 0.01  # used when too few labeled studies for cross-validation (< 2 per class)


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe on raw features: ``logit = features @ weight + bias``."""

    weight: np.ndarray  # (F,) float64, standardisation folded in
    bias: float
    c: float  # chosen inverse L2 strength
    cv_auroc: float | None  # out-of-fold study AUROC at ``c`` (None without cross-validation)
    cv_folds: int  # folds used (0: no cross-validation, DEFAULT_C)
    cv_grid: dict = field(default_factory=dict)  # {c: out-of-fold study AUROC}

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features → (N,) logits."""
        return np.asarray(features, dtype=np.float64) @ self.weight + self.bias


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Standardise, fit an L2 logistic regression (classes balanced; labels 0..K-1) and fold the
    standardisation into it: (weight (R, F), bias (R,)) on raw features, R = 1 for two classes
    (the logit of class 1, as scikit-learn keeps it), else one row per class (softmax logits)."""
    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings():  # strong regularisation converges slowly; it is fine here
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        model.fit(scaler.transform(x), y)
    weight = model.coef_ / scaler.scale_
    return weight, model.intercept_ - weight @ scaler.mean_


def select_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, fit, score,
             cs: tuple[float, ...], folds: int, seed: int) -> tuple[float, dict, int]:
    """C by stratified cross-validation grouped by ``groups``: for each C, ``score(y, oof)`` of
    the pooled out-of-fold logits ``oof`` (N, R) of ``fit(x, y, c)`` → (weight (R, F), bias
    (R,)); the best wins, ties go to the smaller C (the stronger regularisation). At most
    ``folds`` folds, and no more than the groups of the rarest class; below two folds there is
    no cross-validation.

    Returns:
        (chosen C, {C: score}, folds used); (DEFAULT_C, {}, 0) without cross-validation.
    """
    k = min(folds, *(len(np.unique(groups[y == label])) for label in np.unique(y)))
    if k < 2:
        return DEFAULT_C, {}, 0
    splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                  .split(x, y, groups))
    grid = {}
    for c in cs:
        oof = None
        for train, held in splits:
            weight, bias = fit(x[train], y[train], c)
            if oof is None:
                oof = np.empty((len(y), len(bias)))
            oof[held] = x[held] @ weight.T + bias
        grid[float(c)] = score(y, oof)  # pooled out-of-fold scores: stabler than fold means
    best = max(grid.values())
    return min(c for c, value in grid.items() if value >= best - 1e-12), grid, k


def fit_probe(features: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
              cs: tuple[float, ...] = C_GRID, folds: int = 5, seed: int = 0) -> ProbeFit:
    """Fit the probe, choosing C by grouped, stratified cross-validation.

    Args:
        features: (S, F) one row per labeled training study (its mean feature ``h``).
        y: (S,) the study labels in {0, 1}.
        groups: (S,) patient of each study; folds never split a patient.
        cs: candidate inverse L2 strengths; the best out-of-fold AUROC wins, ties go to the
            smaller C (the stronger regularisation).
        folds: at most this many folds (fewer when a class has fewer patients).
        seed: shuffles the fold assignment.

    Returns:
        The :class:`ProbeFit` refitted on every study at the chosen C.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups).astype(str)
    if x.ndim != 2 or len(x) != len(y) or len(y) != len(groups):
        raise ValueError(f"fit_probe: features {x.shape}, y {y.shape}, groups {groups.shape}")
    n_pos, n_neg = len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0]))
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"fit_probe needs studies of both classes, got {int(y.sum())} positive "
                         f"and {int((1 - y).sum())} negative")
    chosen, grid, k = select_c(x, y, groups, fit=fit_logistic, cs=cs, folds=folds, seed=seed,
                               score=lambda y_true, oof: auroc(y_true, oof[:, 0]))
    weight, bias = fit_logistic(x, y, chosen)
    return ProbeFit(weight[0], float(bias[0]), chosen, grid.get(chosen), k, grid)
