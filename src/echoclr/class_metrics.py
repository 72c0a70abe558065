"""Metrics of a multi-class readout (a categorical task such as the echo view): one-vs-rest
AUROC per class and their macro mean, each with a percentile-bootstrap interval over studies
(a study's videos resampled together), accuracy and the confusion matrix of the most probable
class.

Inputs are numpy arrays: ``y_true`` (N,) class indices, ``proba`` (N, K) probabilities.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix

from echoclr.metrics import auroc, batched_auroc
from echoclr.significance import MIN_PER_CLASS, percentile_interval, resample_weights


def _interval(values: list[np.ndarray], alpha: float) -> tuple[float, float]:
    return percentile_interval(np.concatenate(values) if values else None, alpha)


def evaluate_classes(y_true, proba, classes: tuple[str, ...], *, clusters=None,
                     n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Per-class and macro one-vs-rest AUROC with bootstrap CIs, accuracy, confusion matrix.

    Args:
        y_true: (N,) class indices into ``classes``.
        proba: (N, K) class probabilities.
        clusters: (N,) the study of each video; resampled as units (None: videos).

    Returns:
        ``per_class`` {class: {"value", "ci_low", "ci_high", "n", "ci_reliable"}} (classes
        absent from ``y_true`` have no value), ``macro_auroc`` (the same keys; over the classes
        present), ``accuracy``, ``confusion`` (rows: true class, columns: predicted),
        ``classes``, n, n_resamples, n_skipped (resamples without every present class),
        ``warnings``.
    """
    y = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y), len(classes)):
        raise ValueError(f"proba {proba.shape} does not match {len(y)} videos x "
                         f"{len(classes)} classes")
    present = [k for k in range(len(classes)) if 0 < (y == k).sum() < len(y)]
    samples: dict[int, list[np.ndarray]] = {k: [] for k in present}
    macro: list[np.ndarray] = []
    n_skipped = 0
    resamples = resample_weights(len(y), clusters, n_resamples, seed) if len(y) else ()
    for weights in resamples:  # no video, no resample
        counts = np.stack([weights @ (y == k) for k in present], axis=1) if present else None
        keep = (counts > 0).all(axis=1) & (counts < weights.sum(axis=1)[:, None]).all(axis=1) \
            if present else np.zeros(len(weights), bool)
        n_skipped += int((~keep).sum())
        if not keep.any():
            continue
        values = [batched_auroc((y == k).astype(float), proba[:, k], weights[keep])
                  for k in present]
        for k, v in zip(present, values):
            samples[k].append(v)
        macro.append(np.mean(values, axis=0))
    units = np.asarray(clusters) if clusters is not None else np.arange(len(y))
    unit = "studies" if clusters is not None else "videos"
    warnings = []
    per_class = {}
    for k, name in enumerate(classes):
        n_units = len(np.unique(units[y == k]))
        if k not in present:
            per_class[name] = {"value": None, "ci_low": None, "ci_high": None, "n": n_units,
                               "ci_reliable": False}
            continue
        low, high = _interval(samples[k], alpha)
        per_class[name] = {"value": auroc((y == k).astype(float), proba[:, k]), "ci_low": low,
                           "ci_high": high, "n": n_units,
                           "ci_reliable": bool(n_units >= MIN_PER_CLASS and np.isfinite(low))}
        if n_units < MIN_PER_CLASS:
            warnings.append(f"class {name}: only {n_units} {unit} (fewer than "
                            f"{MIN_PER_CLASS}): its interval is unreliable")
    if n_skipped > 0.05 * n_resamples:
        warnings.append(f"{n_skipped} of {n_resamples} bootstrap resamples lacked a class and "
                        "were skipped (over 5 %): the intervals are unreliable")
    low, high = _interval(macro, alpha)
    scored = [per_class[classes[k]]["value"] for k in present]
    macro_value = float(np.mean(scored)) if scored else None
    predicted = proba.argmax(axis=1) if len(y) else np.zeros(0, int)
    return {"classes": list(classes), "n": int(len(y)),
            "per_class": per_class,
            "macro_auroc": {"value": macro_value, "ci_low": low, "ci_high": high,
                            "ci_reliable": not warnings and bool(np.isfinite([low, high]).all())},
            "accuracy": float((predicted == y).mean()) if len(y) else None,
            "confusion": (confusion_matrix(y, predicted, labels=range(len(classes))) if len(y)
                          else np.zeros((len(classes), len(classes)), int)).tolist(),
            "n_resamples": n_resamples, "n_skipped": n_skipped, "seed": seed,
            "warnings": warnings}
