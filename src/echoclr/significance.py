"""Uncertainty of study-level metrics: cluster-bootstrap 95 % CIs and paired AUROC tests.

DeLong, DeLong & Clarke-Pearson, Biometrics 44:837 (1988), computed with the midrank algorithm of
Sun & Xu, IEEE Signal Processing Letters 21:1389 (2014).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from scipy.stats import norm, rankdata

from echoclr.metrics import (
    BATCHED, auroc, average_precision, batched_auroc, batched_average_precision,
    batched_threshold_metrics, check_scores, threshold_metrics,
)

CI_METRICS = ("auroc", "auprc", "balanced_accuracy", "sensitivity", "specificity", "f1")
_MAX_WEIGHT_CELLS = 4_000_000  # resamples x rows held at once (32 MB of float64)
# A percentile interval from fewer studies of a class, or from resamples of which more were
# skipped (they held one class), is flagged beside its number.
MIN_PER_CLASS = 10
MAX_SKIPPED_SHARE = 0.05


def interval_warnings(n_pos: int, n_neg: int, n_resamples: int, n_skipped: int, *,
                      unit: str = "studies") -> list[str]:
    """Why a bootstrap interval over ``n_pos`` positive and ``n_neg`` negative units is not to
    be trusted: too few of a class (< :data:`MIN_PER_CLASS`), or too many resamples skipped
    (> :data:`MAX_SKIPPED_SHARE`); empty when neither."""
    found = []
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        found.append(f"only {n_pos} positive and {n_neg} negative {unit} (fewer than "
                     f"{MIN_PER_CLASS} of a class): the 95 % intervals are unreliable")
    if n_skipped > MAX_SKIPPED_SHARE * n_resamples:
        found.append(f"{n_skipped} of {n_resamples} bootstrap resamples "
                     f"({100 * n_skipped / n_resamples:.0f} %) held one class and were skipped "
                     f"(over {100 * MAX_SKIPPED_SHARE:.0f} %): the 95 % intervals are unreliable")
    return found


def class_counts(y: np.ndarray, clusters=None) -> tuple[int, int]:
    """Positive and negative units: rows, or clusters (each cluster's rows share one label)."""
    if clusters is not None:
        _, first = np.unique(np.asarray(clusters), return_index=True)
        y = y[first]
    n_pos = int(np.sum(y == 1))
    return n_pos, len(y) - n_pos


def resample_weights(n_rows: int, clusters, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield blocks of (b, n_rows) row multiplicities, one row per bootstrap resample.

    The draws are ``np.random.default_rng(seed).integers(0, n_units, (n_resamples, n_units))``:
    resample ``r`` takes units ``draws[r]`` with replacement, a unit being a row, or a cluster
    (numbered in ``np.unique(clusters)`` order) whose rows all go in together.
    """
    if clusters is None:
        row_unit, n_units = None, n_rows
    else:
        clusters = np.asarray(clusters)
        if clusters.shape != (n_rows,):
            message = f"clusters must have one entry per row ({n_rows}), got {clusters.shape}"
            raise ValueError(message)
        _, row_unit = np.unique(clusters, return_inverse=True)
        n_units = int(row_unit.max()) + 1
    draws = np.random.default_rng(seed).integers(0, n_units, size=(n_resamples, n_units))
    block = max(1, _MAX_WEIGHT_CELLS // max(n_rows, n_units))
    for start in range(0, n_resamples, block):
        chunk = draws[start:start + block]
        offsets = n_units * np.arange(len(chunk))[:, None]
        counts = np.bincount((chunk + offsets).ravel(), minlength=chunk.size)
        counts = counts.reshape(len(chunk), n_units).astype(float)
        yield counts if row_unit is None else counts[:, row_unit]


def _bootstrap(y, statistic: Callable, n_resamples: int, seed: int, clusters):
    """Run `statistic(weights) -> dict of (b,) arrays` over resamples holding both classes."""
    kept: dict[str, list[np.ndarray]] = {}
    n_skipped = 0
    for weights in resample_weights(len(y), clusters, n_resamples, seed):
        n_pos = weights @ y
        both = (n_pos > 0) & (n_pos < weights.sum(axis=1))
        n_skipped += int((~both).sum())
        if both.any():
            for key, values in statistic(weights[both]).items():
                kept.setdefault(key, []).append(values)
    return {key: np.concatenate(parts) for key, parts in kept.items()}, n_skipped


def percentile_interval(values: np.ndarray | None, alpha: float) -> tuple[float, float]:
    if values is None or len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(y_true, y_score, metric_fn: Callable, *, n_resamples: int = 1000, seed: int = 0,
                 alpha: float = 0.05, clusters=None) -> dict:
    """Percentile-bootstrap confidence interval of ``metric_fn(y_true, y_score)``.

    A 95 % interval (alpha=0.05) spans the 2.5th to 97.5th percentiles. (The bootstrap helpers in
    the EchoCLR and EchoNet-Dynamic public code take the 5th/95th and call it 95 %: that is 90 %.)
    With ``clusters`` (e.g. study ids of video rows) whole clusters are resampled, so correlated
    rows never split. Resamples holding one class only are skipped and counted. ``auroc`` and
    ``average_precision`` (or sklearn's ``roc_auc_score``/``average_precision_score``) run for all
    resamples at once; any other metric is called once per resample.

    Args:
        y_true, y_score: (n,) labels in {0, 1} and scores.
        metric_fn: ``f(y_true, y_score) -> float``.
        n_resamples: bootstrap resamples drawn (skipped ones included).
        seed: seed of the ``numpy.random.Generator`` that draws them; same seed, same interval.
        alpha: 1 - confidence level.
        clusters: (n,) cluster label per row, or None to resample rows.

    Returns:
        value (on all data), ci_low, ci_high, n_resamples, n_skipped.
    """
    y, s = check_scores(y_true, y_score)
    labels = y.astype(int)
    batched = BATCHED.get(metric_fn)
    if batched is not None:
        def statistic(weights):
            return {"value": batched(y, s, weights)}
    else:
        def statistic(weights):
            rows = np.arange(len(y))
            return {"value": np.array([metric_fn(labels[idx], s[idx]) for idx in
                                       (np.repeat(rows, w.astype(int)) for w in weights)])}
    samples, n_skipped = _bootstrap(y, statistic, n_resamples, seed, clusters)
    low, high = percentile_interval(samples.get("value"), alpha)
    return {"value": float(metric_fn(labels, s)), "ci_low": low, "ci_high": high,
            "n_resamples": n_resamples, "n_skipped": n_skipped}


def paired_bootstrap_delta(y_true, score_a, score_b, *, n_resamples: int = 1000, seed: int = 0,
                           clusters=None, alpha: float = 0.05) -> dict:
    """Percentile-bootstrap CI of AUROC(a) - AUROC(b), both models scored on the same resamples.

    Resampling, seeding and skipping follow :func:`bootstrap_ci`; pass study ids as ``clusters``
    when rows are videos.

    Returns:
        delta, ci_low, ci_high, n_resamples, n_skipped.
    """
    y, a = check_scores(y_true, score_a, name="score_a")
    _, b = check_scores(y_true, score_b, name="score_b")

    def statistic(weights):
        return {"delta": batched_auroc(y, a, weights) - batched_auroc(y, b, weights)}

    samples, n_skipped = _bootstrap(y, statistic, n_resamples, seed, clusters)
    low, high = percentile_interval(samples.get("delta"), alpha)
    delta = float(batched_auroc(y, a, np.ones((1, len(y))))[0]
                  - batched_auroc(y, b, np.ones((1, len(y))))[0])
    return {"delta": delta, "ci_low": low, "ci_high": high,
            "n_resamples": n_resamples, "n_skipped": n_skipped}


def delong_components(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components of each score row's AUROC (Sun & Xu 2014, midranks).

    Args:
        y_true: (n,) labels in {0, 1} (validated by the caller).
        scores: (k, n) one row of scores per model.

    Returns:
        v10 (k, m): per positive, the share of negatives scored below it (ties count half);
        v01 (k, n - m): per negative, the share of positives scored above it. Each row's AUROC
        is ``v10[i].mean()`` (= ``v01[i].mean()``).
    """
    positive = np.asarray(y_true) == 1
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    m, n = int(positive.sum()), int((~positive).sum())
    pos, neg = scores[:, positive], scores[:, ~positive]
    combined = rankdata(np.hstack([pos, neg]), axis=1)  # midranks, ties averaged
    v10 = (combined[:, :m] - rankdata(pos, axis=1)) / n
    v01 = 1.0 - (combined[:, m:] - rankdata(neg, axis=1)) / m
    return v10, v01


def delong_test(y_true, score_a, score_b, *, alpha: float = 0.05) -> dict:
    """DeLong's paired test of AUROC(a) = AUROC(b) on the same cases, O(n log n) (Sun & Xu 2014).

    Rows must be independent: with several videos per study, run it on study-level scores
    (:func:`aggregate_by_study`), or use :func:`paired_bootstrap_delta` with ``clusters``.

    Returns:
        auc_a, auc_b, delta = auc_a - auc_b, se (of delta), z, two-sided p_value, and the
        Wald interval ci_low, ci_high of delta at level 1 - alpha.
    """
    y, a = check_scores(y_true, score_a, name="score_a")
    _, b = check_scores(y_true, score_b, name="score_b")
    m, n = int(y.sum()), int((1 - y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"delong_test needs >= 2 positives and negatives, got {m} and {n}")
    v10, v01 = delong_components(y, np.vstack([a, b]))
    auc_a, auc_b = v10.mean(axis=1)
    delta = auc_a - auc_b
    var = np.var(v10[0] - v10[1], ddof=1) / m + np.var(v01[0] - v01[1], ddof=1) / n
    se = float(np.sqrt(var))
    if se > 0:
        z = delta / se
    else:  # identical rankings: no variance, and no difference unless the data are degenerate
        z = 0.0 if delta == 0 else float(np.copysign(np.inf, delta))
    half_width = norm.ppf(1 - alpha / 2) * se
    return {"auc_a": float(auc_a), "auc_b": float(auc_b), "delta": float(delta), "se": se,
            "z": float(z), "p_value": float(2 * norm.sf(abs(z))),
            "ci_low": float(delta - half_width), "ci_high": float(delta + half_width)}


def evaluate_scores(y_true, y_score, *, threshold: float | None = None, n_resamples: int = 1000,
                    seed: int = 0, clusters=None, alpha: float = 0.05) -> dict:
    """Point estimates and bootstrap CIs of the paper's metrics, all from the same resamples.

    Args:
        y_true, y_score: (n,) labels and scores, usually one row per study.
        threshold: decision threshold chosen on validation data (:func:`youden_threshold`);
            None uses 0.5. Threshold metrics are also reported at 0.5 under ``"at_0.5"``.
        n_resamples, seed, clusters, alpha: as in :func:`bootstrap_ci`.

    Returns:
        ``{metric: {"value", "ci_low", "ci_high", "ci_reliable"}}`` for auroc, auprc (average
        precision), balanced_accuracy, sensitivity, specificity, f1 (the last four at
        ``threshold``); ``at_threshold`` and ``at_0.5``: :func:`threshold_metrics`; n, n_pos,
        n_resamples, n_skipped, seed; ``warnings``: :func:`interval_warnings` (units: clusters
        when given). ``ci_reliable`` is False under a warning or without an interval.
    """
    y, s = check_scores(y_true, y_score)
    threshold = 0.5 if threshold is None else float(threshold)

    def statistic(weights):
        return {"auroc": batched_auroc(y, s, weights),
                "auprc": batched_average_precision(y, s, weights),
                **batched_threshold_metrics(y, s, weights, threshold)}

    samples, n_skipped = _bootstrap(y, statistic, n_resamples, seed, clusters)
    at_threshold = threshold_metrics(y, s, threshold)
    point = {"auroc": auroc(y, s), "auprc": average_precision(y, s), **at_threshold}
    warnings = interval_warnings(*class_counts(y, clusters), n_resamples, n_skipped)
    out: dict = {}
    for key in CI_METRICS:
        low, high = percentile_interval(samples.get(key), alpha)
        out[key] = {"value": point[key], "ci_low": low, "ci_high": high,
                    "ci_reliable": not warnings and bool(np.isfinite([low, high]).all())}
    return out | {"at_threshold": at_threshold, "at_0.5": threshold_metrics(y, s, 0.5),
                  "n": len(y), "n_pos": int(y.sum()), "n_resamples": n_resamples,
                  "n_skipped": n_skipped, "seed": seed, "warnings": warnings}
