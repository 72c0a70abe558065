"""Figures of an evaluation: ROC and precision-recall curves, label-efficiency curves (AUROC vs
label fraction, as in Holste et al. 2024, Fig. 2) and training-log curves, saved as PNG.

Figures are built with matplotlib's object API (no pyplot state), so they render headless (Agg).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

LABEL_EFFICIENCY_COLUMNS = ("init", "task", "split", "fraction", "auroc")


def _save(fig: Figure, out_png) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=150, bbox_inches="tight")
    return out_png


def _legend(name: str, metric: str, value: float, n: int, ci: tuple | None) -> str:
    """``name (AUROC 0.742)``, or with its interval ``name — n=210, AUROC 0.74 [0.68, 0.80]``."""
    if ci is None:
        return f"{name} ({metric} {value:.3f})"
    return f"{name} — n={n}, {metric} {value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def plot_roc(curves: Mapping[str, tuple], out_png, title: str = "ROC", *,
             cis: Mapping[str, tuple] | None = None) -> Path:
    """One ROC line per named ``(y_true, y_score)``, AUROC in the legend (with n and the CI
    ``cis[name]`` = (low, high) when given), chance diagonal.

    Returns:
        The path written.
    """
    cis = cis or {}
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, (y_true, y_score) in curves.items():
        fpr, tpr, _ = roc_curve(y_true, y_score)
        ax.plot(fpr, tpr, label=_legend(name, "AUROC", roc_auc_score(y_true, y_score),
                                        len(y_true), cis.get(name)))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=title,
           xlabel="1 - specificity (false-positive rate)", ylabel="Sensitivity")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, out_png)


def plot_pr(curves: Mapping[str, tuple], out_png, title: str = "Precision-recall", *,
            cis: Mapping[str, tuple] | None = None) -> Path:
    """One precision-recall step line per named ``(y_true, y_score)``, average precision in the
    legend (with n and the CI ``cis[name]`` when given), and each distinct prevalence as the
    no-skill baseline.

    Returns:
        The path written.
    """
    cis = cis or {}
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    prevalences = set()
    for name, (y_true, y_score) in curves.items():
        precision, recall, _ = precision_recall_curve(y_true, y_score)
        ap = average_precision_score(y_true, y_score)
        ax.step(recall, precision, where="post",
                label=_legend(name, "AP", ap, len(y_true), cis.get(name)))
        prevalences.add(round(float(np.mean(y_true)), 4))
    for prevalence in sorted(prevalences):
        ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"prevalence {prevalence:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal", title=title,
           xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, out_png)


def calibration_figure(y_true, y_score, *, bins: int = 10,
                       title: str = "Reliability (calibration)") -> Figure:
    """Observed frequency of positives against mean predicted probability in ``bins`` equal
    bins of [0, 1] (scikit-learn's ``calibration_curve`` binning: a score on an edge goes to
    the lower bin), each point labelled with its count, over a bar chart of the counts.
    """
    y_true, y_score = np.asarray(y_true, float), np.asarray(y_score, float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.searchsorted(edges[1:-1], y_score)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    predicted = np.bincount(which, weights=y_score, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(which, weights=y_true, minlength=bins)[filled] / counts[filled]
    fig = Figure(figsize=(5, 6), layout="constrained")
    ax, ax_counts = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", label="model")
    for x, y, n in zip(predicted, observed, counts[filled]):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), title=title, ylabel="Observed frequency of positives")
    ax.legend(loc="upper left", fontsize="small")
    ax_counts.bar(edges[:-1], counts, width=1 / bins, align="edge", color="C0", alpha=0.5,
                  edgecolor="white")
    ax_counts.set(xlabel="Predicted probability", ylabel="Count")
    return fig


def confusion_figure(y_true, y_score, *, threshold: float, title: str = "Confusion") -> Figure:
    """The 2 x 2 confusion matrix of ``y_score >= threshold`` (rows: true 0, 1; columns:
    predicted 0, 1), counts written in the cells."""
    y_true, called = np.asarray(y_true) == 1, np.asarray(y_score) >= threshold
    matrix = np.array([[np.sum(~y_true & ~called), np.sum(~y_true & called)],
                       [np.sum(y_true & ~called), np.sum(y_true & called)]])
    return matrix_figure(matrix, ["0", "1"], title=f"{title} (threshold {threshold:.3g})")


def matrix_figure(matrix, labels: Sequence[str], *, title: str = "Confusion") -> Figure:
    """A confusion matrix of counts (rows: true class, columns: predicted, in ``labels``
    order), counts written in the cells."""
    matrix = np.asarray(matrix)
    side = 2.6 + 0.6 * len(labels)
    fig = Figure(figsize=(side, side * 0.9), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues", vmin=0)
    for (row, col), n in np.ndenumerate(matrix):
        ax.text(col, row, str(n), ha="center", va="center",
                color="white" if n > matrix.max() / 2 else "black")
    ticks = list(range(len(labels)))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=list(labels), yticklabels=list(labels),
           xlabel="Predicted", ylabel="True", title=title)
    return fig


def save_figure(fig: Figure, out_png) -> Path:
    """Save a figure of this module as a PNG; returns the path written."""
    return _save(fig, out_png)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


READOUT_STYLES = {"finetune": "-", "probe": "--", "lpft": ":"}


def label_efficiency_figure(results: pd.DataFrame, title: str | None = None) -> Figure:
    """Test AUROC against the fraction of labelled training studies (Holste et al. 2024, Fig. 2).

    One panel per (task, split): tasks down, splits across. Each (init, readout) is a colour
    (init) and a line style (readout: solid fine-tuning, dashed probe, dotted LP-FT); every
    label draw is a point, their mean the line.

    Args:
        results: columns ``init, task, split, fraction, auroc`` and optionally ``readout``;
            fraction in (0, 1], drawn on a log axis labelled in percent.
        title: figure title.
    """
    missing = [c for c in LABEL_EFFICIENCY_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"plot_label_efficiency: missing columns {missing}")
    if results.empty:
        raise ValueError("plot_label_efficiency: no results to plot")
    if "readout" not in results.columns:
        results = results.assign(readout="finetune")
    tasks, splits = sorted(results["task"].unique()), sorted(results["split"].unique())
    inits = list(dict.fromkeys(results["init"]))  # first-seen order, fixed colour per init
    readouts = list(dict.fromkeys(results["readout"]))
    colours = {init: f"C{i % 10}" for i, init in enumerate(inits)}
    fractions = np.sort(results["fraction"].unique())
    fig = Figure(figsize=(4.6 * len(splits), 3.6 * len(tasks)), layout="constrained")
    axes = fig.subplots(len(tasks), len(splits), squeeze=False, sharey=True)
    series = list(itertools.product(inits, readouts))
    for (row, task), (col, split) in itertools.product(enumerate(tasks), enumerate(splits)):
        ax = axes[row, col]
        panel = results[(results["task"] == task) & (results["split"] == split)]
        for i, (init, readout) in enumerate(series):
            runs = panel[(panel["init"] == init) & (panel["readout"] == readout)]
            if runs.empty:
                continue
            # Nudge the series apart on the log axis so their draws do not overlap.
            shift = 1 + 0.04 * (i - (len(series) - 1) / 2)
            line = runs.groupby("fraction", sort=True)["auroc"].mean()
            ax.plot(line.index * shift, line.to_numpy(), marker="o", ms=4,
                    ls=READOUT_STYLES.get(readout, "-"), color=colours[init],
                    label=f"{init} ({readout})" if len(readouts) > 1 else init)
            ax.scatter(runs["fraction"] * shift, runs["auroc"], s=9, color=colours[init],
                       alpha=0.45, lw=0)
        ax.axhline(0.5, ls=":", color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_xlim(fractions[0] / 1.5, fractions[-1] * 1.5)
        ax.set_xticks(fractions, labels=[_percent(f) for f in fractions])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(title=f"{task} - {split}", xlabel="Labelled training studies",
               ylabel="AUROC (points: label draws)")
    axes[0, 0].legend(fontsize="small", loc="lower right")
    if title:
        fig.suptitle(title)
    return fig


def plot_label_efficiency(results: pd.DataFrame, out_png, title: str | None = None) -> Path:
    """:func:`label_efficiency_figure` saved as a PNG; returns the path written."""
    return _save(label_efficiency_figure(results, title), out_png)


def loss_curves_figure(log_rows: Sequence[Mapping], keys: Sequence[str] = ("loss",), *,
                       chance: Mapping[str, float] | None = None,
                       marks: Mapping[str, float] | None = None) -> Figure:
    """One panel per logged quantity (e.g. ``loss``, ``reorder_acc``, ``retrieval_acc``) against
    ``step``; rows without ``step`` or without a finite value for a key are left out of its panel.

    Args:
        chance: per key, the value of a model that learned nothing (a dashed line), so a reader
            sees at a glance whether reordering or retrieval left chance.
        marks: label → step of a vertical dotted line in every panel (e.g. a warm-up's end).
    """
    if not keys:
        raise ValueError("plot_loss_curves: no keys to plot")
    chance, marks = chance or {}, marks or {}
    fig = Figure(figsize=(4.2 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        points = [(row["step"], row[key]) for row in log_rows
                  if "step" in row and isinstance(row.get(key), numbers.Real)
                  and np.isfinite(row[key])]
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, lw=1, label=key)
        else:
            ax.text(0.5, 0.5, f"{key!r} not logged", ha="center", va="center",
                    transform=ax.transAxes)
        if key in chance and np.isfinite(chance[key]):
            ax.axhline(chance[key], color="grey", ls="--", lw=1, label="chance")
        for label, step in marks.items():
            ax.axvline(step, color="grey", ls=":", lw=1, label=label)
        if key in chance or marks:
            ax.legend(fontsize=7, loc="best")
        ax.set(title=key, xlabel="step")
    return fig


def plot_loss_curves(log_rows: Sequence[Mapping], out_png, keys: Sequence[str] = ("loss",), *,
                     chance: Mapping[str, float] | None = None,
                     marks: Mapping[str, float] | None = None) -> Path:
    """Save :func:`loss_curves_figure` as a PNG; returns the path written."""
    return _save(loss_curves_figure(log_rows, keys, chance=chance, marks=marks), out_png)
