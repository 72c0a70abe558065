"""What evaluate writes besides the numbers: a reliability plot and a confusion matrix at the
validation threshold (their artists' data checked against scikit-learn), ROC/PR legends that
name the run, n and the CI; statistics from too little data flagged beside the number; valid
JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score

from _model_fixtures import write_tiny_model
from conftest import make_cache
from echoclr import plots
from echoclr.cli import main
from test_plot_content import drawn, lines_by_label, scored  # noqa: F401 (a fixture)


def strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"not valid JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_calibration_figure_draws_sklearns_reliability_curve_and_the_counts():
    rng = np.random.default_rng(0)
    y_score = rng.uniform(0, 1, 300) ** 2  # crowded low, some bins sparse
    y_true = (rng.uniform(0, 1, 300) < y_score).astype(int)
    fig = plots.calibration_figure(y_true, y_score, bins=10)
    curve, counts_axis = fig.axes
    line = next(x for x in curve.get_lines() if x.get_label() == "model")
    observed, predicted = calibration_curve(y_true, y_score, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(line.get_xdata(), predicted)
    np.testing.assert_allclose(line.get_ydata(), observed)
    bars = [patch.get_height() for patch in counts_axis.patches]
    np.testing.assert_array_equal(bars, np.histogram(y_score, bins=10, range=(0, 1))[0])
    shown = sorted(int(t.get_text()) for t in curve.texts)
    assert shown == sorted(np.histogram(y_score, bins=10, range=(0, 1))[0][
        np.histogram(y_score, bins=10, range=(0, 1))[0] > 0].tolist())


def test_confusion_figure_shows_sklearns_matrix_at_the_threshold():
    y_true, y_score = scored(4)
    threshold = 0.4
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_score >= threshold)
    fig = plots.confusion_figure(y_true, y_score, threshold=threshold)
    (ax, *_) = fig.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), [[tn, fp], [fn, tp]])
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted([tn, fp, fn, tp])
    assert "0.4" in ax.get_title()


def test_roc_and_pr_legends_name_the_run_n_and_the_ci(tmp_path, drawn):  # noqa: F811
    y_true, y_score = scored(5)
    curves = {"echoclr/finetune": (y_true, y_score)}
    plots.plot_roc(curves, tmp_path / "roc.png", cis={"echoclr/finetune": (0.61, 0.83)})
    auc = roc_auc_score(y_true, y_score)
    want = f"echoclr/finetune — n={len(y_true)}, AUROC {auc:.2f} [0.61, 0.83]"
    assert want in lines_by_label(drawn[0]), sorted(lines_by_label(drawn[0]))
    plots.plot_pr(curves, tmp_path / "pr.png", cis={"echoclr/finetune": (0.5, 0.7)})
    assert any(label.startswith(f"echoclr/finetune — n={len(y_true)}, AP ")
               and label.endswith("[0.50, 0.70]") for label in lines_by_label(drawn[1]))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A model and a cache whose test split has 2 studies (1 positive, 1 negative)."""
    tmp = tmp_path_factory.mktemp("small")
    return write_tiny_model(tmp / "run"), make_cache(tmp / "cache", n_studies=10)


def test_degenerate_intervals_are_flagged_and_the_json_is_valid(small_run, capsys):
    run, cache = small_run
    assert main(["evaluate", str(run), "--cache", str(cache), "--clips", "1",
                 "--n-resamples", "200", "--no-plots", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    result = strict_loads((run / "metrics.json").read_text())
    study = result["study"]
    assert study["n"] == 2 and study["n_skipped"] > 10
    assert study["auroc"]["ci_reliable"] is False
    assert all(study[m]["ci_reliable"] is False for m in ("auprc", "sensitivity", "f1"))
    assert any("only 1 positive and 1 negative studies" in w for w in result["warnings"])
    assert any("resamples" in w for w in result["warnings"])
    assert "warning: only 1 positive and 1 negative studies" in printed
    assert "unreliable" in printed.splitlines()[0]


def test_evaluate_draws_calibration_and_confusion_and_counts_the_matrix(small_run, tmp_path,
                                                                        capsys):
    run, cache = small_run
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--cache", str(cache), "--clips", "1", "--split", "val",
                 "--n-resamples", "20", "--out", str(out), "--device", "cpu"]) == 0
    for name in ("roc.png", "pr.png", "calibration.png", "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    result = strict_loads((out / "metrics.json").read_text())
    studies = np.genfromtxt(out / "study_predictions.csv", delimiter=",", names=True,
                            dtype=None, encoding="utf-8")
    (tn, fp), (fn, tp) = confusion_matrix(studies["y_true"],
                                          studies["y_score"] >= result["threshold"],
                                          labels=[0, 1])
    assert result["confusion"] == {"threshold": result["threshold"], "level": "study",
                                   "tn": tn, "fp": fp, "fn": fn, "tp": tp}
    capsys.readouterr()
    plain = tmp_path / "plain"
    assert main(["evaluate", str(run), "--cache", str(cache), "--clips", "1", "--no-plots",
                 "--n-resamples", "20", "--out", str(plain), "--device", "cpu"]) == 0
    assert not list(plain.glob("*.png"))
