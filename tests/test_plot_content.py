"""What the ROC and precision-recall figures draw, checked against scikit-learn's curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from echoclr import plots


@pytest.fixture
def drawn(monkeypatch):
    """Figures handed to the writer, in order (the PNG is still written)."""
    figures = []
    save = plots._save

    def keep(fig, out_png):
        figures.append(fig)
        return save(fig, out_png)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def scored(seed: int, n: int = 60, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    score = np.round(rng.normal(size=n) + signal * y_true, 1)  # rounding makes ties
    return y_true, score


def lines_by_label(fig) -> dict:
    (ax,) = fig.axes
    return {line.get_label(): line for line in ax.get_lines()}


def test_roc_figure_draws_each_curve_as_sklearn_computes_it(tmp_path, drawn):
    curves = {"EchoCLR": scored(0), "Random init": scored(1, signal=0.2)}
    plots.plot_roc(curves, tmp_path / "roc.png", "LVH, test")
    assert (tmp_path / "roc.png").is_file() and len(drawn) == 1
    lines = lines_by_label(drawn[0])
    for name, (y_true, y_score) in curves.items():
        label = f"{name} (AUROC {roc_auc_score(y_true, y_score):.3f})"
        assert label in lines, sorted(lines)
        fpr, tpr, _ = roc_curve(y_true, y_score)
        np.testing.assert_allclose(lines[label].get_xdata(), fpr)
        np.testing.assert_allclose(lines[label].get_ydata(), tpr)
    chance = lines["chance"]
    assert list(chance.get_xdata()) == [0, 1] and list(chance.get_ydata()) == [0, 1]
    assert len(lines) == len(curves) + 1


def test_pr_figure_draws_each_curve_and_its_prevalence(tmp_path, drawn):
    curves = {"EchoCLR": scored(2), "Kinetics": scored(3, signal=0.5)}
    plots.plot_pr(curves, tmp_path / "pr.png")
    lines = lines_by_label(drawn[0])
    for name, (y_true, y_score) in curves.items():
        label = f"{name} (AP {average_precision_score(y_true, y_score):.3f})"
        assert label in lines, sorted(lines)
        precision, recall, _ = precision_recall_curve(y_true, y_score)
        np.testing.assert_allclose(lines[label].get_xdata(), recall)
        np.testing.assert_allclose(lines[label].get_ydata(), precision)
        assert lines[label].get_drawstyle() == "steps-post"
        prevalence = f"prevalence {np.mean(y_true):.3f}"
        assert np.allclose(lines[prevalence].get_ydata(), round(float(np.mean(y_true)), 4))
