"""Study-level diagnostic metrics: AUROC, AUPRC, threshold metrics, video → study aggregation.

Inputs follow scikit-learn: ``y_true`` in {0, 1} and ``y_score`` higher for the positive class.
The ``batched_*`` forms score many bootstrap resamples at once (see :mod:`echoclr.significance`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def check_scores(y_true, y_score, *, name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    """Validated float (n,) labels and scores: 1-D, equal length, 0/1 labels of both classes,
    finite scores; raises ValueError naming what is wrong."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        message = f"y_true and {name} must be 1-D and equal length, got {y.shape}, {s.shape}"
        raise ValueError(message)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold only 0/1 labels, found {np.unique(y)[:5].tolist()}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(s)).sum())} non-finite values")
    y = y.astype(float)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError(f"y_true needs both classes, got {int(y.sum())} positives of {len(y)}")
    return y, s


# --- Metrics on a batch of resamples: `weights` (B, n) holds each row's multiplicity; each
# returns (B,). Used for point estimates (one row of ones) and by echoclr.significance. ---


def _tie_groups(y, s, weights) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per distinct score, highest score first: two (B, G)."""
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    w = weights[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - y[order]), starts, axis=1)
    return pos, neg


def batched_auroc(y, s, weights) -> np.ndarray:
    # Mann-Whitney: P(score_pos > score_neg) + 0.5 P(tie), the same as the trapezoidal ROC area.
    pos, neg = _tie_groups(y, s, weights)
    n_neg = neg.sum(axis=1)
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
    return (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * n_neg)


def batched_average_precision(y, s, weights) -> np.ndarray:
    # sklearn's step-wise AP: sum over thresholds of (recall gain) x (precision at threshold).
    pos, neg = _tie_groups(y, s, weights)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    return (pos * precision).sum(axis=1) / pos.sum(axis=1)


def batched_threshold_metrics(y, s, weights, threshold: float) -> dict[str, np.ndarray]:
    predicted = (s >= threshold).astype(float)
    tp = weights @ (y * predicted)
    fn = weights @ (y * (1.0 - predicted))
    fp = weights @ ((1.0 - y) * predicted)
    tn = weights @ ((1.0 - y) * (1.0 - predicted))
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        return {
            "balanced_accuracy": (sensitivity + specificity) / 2,
            "sensitivity": sensitivity,
            "specificity": specificity,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "ppv": tp / (tp + fp),  # NaN when nothing is called positive
            "npv": tn / (tn + fn),  # NaN when nothing is called negative
        }


def auroc(y_true, y_score) -> float:
    """Area under the ROC curve (ties count one half); equals sklearn's ``roc_auc_score``."""
    y, s = check_scores(y_true, y_score)
    return float(batched_auroc(y, s, np.ones((1, len(y))))[0])


def average_precision(y_true, y_score) -> float:
    """Average precision (AUPRC, step-wise); equals sklearn's ``average_precision_score``."""
    y, s = check_scores(y_true, y_score)
    return float(batched_average_precision(y, s, np.ones((1, len(y))))[0])


# Metrics the bootstrap evaluates for all resamples at once instead of one call per resample.
BATCHED = {
    auroc: batched_auroc,
    roc_auc_score: batched_auroc,
    average_precision: batched_average_precision,
    average_precision_score: batched_average_precision,
}


def threshold_metrics(y_true, y_score, threshold: float) -> dict[str, float]:
    """Metrics of the decision ``y_score >= threshold``.

    Returns:
        balanced_accuracy, sensitivity, specificity, f1, ppv, npv (NaN when undefined: no
        predicted positives for ppv, none negative for npv) and the threshold itself.
    """
    y, s = check_scores(y_true, y_score)
    batch = batched_threshold_metrics(y, s, np.ones((1, len(y))), threshold)
    return {key: float(value[0]) for key, value in batch.items()} | {"threshold": float(threshold)}


def youden_threshold(y_true, y_score) -> float:
    """The score maximising Youden's J = sensitivity + specificity - 1 on the ROC curve.

    Positive means ``y_score >= threshold``; of tied maxima the highest threshold wins. Pick it on
    validation data and apply it, fixed, to test data.
    """
    y, s = check_scores(y_true, y_score)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # sklearn's first threshold is +inf (nothing positive)
    best = np.argmax((tpr - fpr)[finite])
    return float(thresholds[finite][best])


def aggregate_by_study(df: pd.DataFrame, *, score: str | list = "y_score",
                       label: str | None = "y_true") -> pd.DataFrame:
    """Average video-level rows into one row per study (Holste et al. 2024: videos -> study).

    The package's one videos -> study rule, for scores, probabilities and features alike.

    Args:
        df: one row per video with columns ``study_id``, ``label`` (unless None) and ``score``.
        score: the column to average, or a list of columns (e.g. one per feature dimension).
        label: the label column (one value per study; blanks ignored), or None.

    Returns:
        Columns ``study_id``, ``label`` (int when every study has one), the mean of each score
        column, ``n_videos``; sorted by study.
    """
    columns = [score] if isinstance(score, str) else list(score)
    missing = [c for c in ("study_id", *([label] if label else []), *columns)
               if c not in df.columns]
    if missing:
        raise ValueError(f"aggregate_by_study: missing columns {missing} in {list(df.columns)}")
    blank = df[columns].isna().any(axis=1)
    if blank.any():
        bad = sorted(df.loc[blank, "study_id"].unique().tolist())
        raise ValueError(f"aggregate_by_study: missing {score!r} in studies {bad[:10]}")
    grouped = df.groupby("study_id", sort=True)
    out = grouped[columns].mean()
    if label:
        mixed = grouped[label].nunique()
        mixed = mixed[mixed > 1].index.tolist()
        if mixed:
            message = f"aggregate_by_study: {label} differs between videos of studies {mixed[:10]}"
            raise ValueError(message)
        labels = grouped[label].first()
        out.insert(0, label, labels.astype(int) if labels.notna().all() else labels)
    out["n_videos"] = grouped.size()
    return out.reset_index()
