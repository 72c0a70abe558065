"""Figures are written as non-empty PNGs, including edge cases (one fraction, several seeds)."""

import numpy as np
import pandas as pd
import pytest

from echoclr import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000, path


def scored(seed: int, n: int = 120, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    return y_true, rng.normal(size=n) + signal * y_true


def test_roc_and_pr_plots(tmp_path):
    curves = {"EchoCLR": scored(0), "Random init": scored(1, signal=0.2)}
    assert_png(plots.plot_roc(curves, tmp_path / "roc.png", "LVH, test"))
    assert_png(plots.plot_pr(curves, tmp_path / "nested" / "pr.png", "LVH, test"))


def efficiency_results(fractions, seeds):
    rng = np.random.default_rng(0)
    rows = []
    for task in ("lvh", "severe_as"):
        for split in ("test", "ext_test"):
            for init in ("random", "kinetics400", "echoclr"):
                for fraction in fractions:
                    for seed in seeds:
                        auroc = 0.6 + 0.3 * fraction + rng.normal(0, 0.02)
                        rows.append(dict(init=init, task=task, split=split, fraction=fraction,
                                         seed=seed, auroc=auroc, ci_low=auroc - 0.04,
                                         ci_high=auroc + 0.04))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fractions, seeds", [
    ((0.01, 0.05, 0.1, 0.25, 0.5, 1.0), (0,)),
    ((0.1,), (0,)),  # a single fraction
    ((0.01, 0.1, 1.0), (0, 1, 2)),  # several seeds per cell
])
def test_label_efficiency_plot(tmp_path, fractions, seeds):
    out = plots.plot_label_efficiency(efficiency_results(fractions, seeds), tmp_path / "eff.png",
                                      title="Label efficiency")
    assert_png(out)


def test_label_efficiency_plot_refuses_missing_columns(tmp_path):
    with pytest.raises(ValueError, match="auroc"):
        plots.plot_label_efficiency(pd.DataFrame({"init": ["a"], "task": ["lvh"], "split": ["test"],
                                                  "fraction": [0.1]}), tmp_path / "x.png")


def test_label_efficiency_draws_each_draw_as_a_point_and_their_mean_as_the_line():
    rng = np.random.default_rng(1)
    rows = [dict(task="lvh", split="test", init=init, readout=readout, fraction=f, draw=d,
                 auroc=rng.uniform(0.5, 0.9))
            for init in ("random", "echoclr") for readout in ("probe", "finetune")
            for f in (0.1, 1.0) for d in range(3 if f < 1 else 1)]
    results = pd.DataFrame(rows)
    fig = plots.label_efficiency_figure(results)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if "(" in line.get_label()}
    assert set(lines) == {"random (probe)", "random (finetune)", "echoclr (probe)",
                          "echoclr (finetune)"}
    for (init, readout), runs in results.groupby(["init", "readout"]):
        np.testing.assert_allclose(lines[f"{init} ({readout})"].get_ydata(),
                                   runs.groupby("fraction")["auroc"].mean().to_numpy())
    points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    np.testing.assert_allclose(np.sort(points), np.sort(results["auroc"]))
    assert lines["echoclr (probe)"].get_linestyle() == "--"


def test_loss_curves_skip_rows_without_the_key(tmp_path):
    rows = [{"step": s, "loss": 4.0 - s / 100, "reorder_acc": 0.04 + s / 1e4}
            for s in range(0, 300, 10)]
    rows += [{"step": 300, "val_loss": 3.1}, {"epoch": 1}]  # other kinds of log rows
    out = plots.plot_loss_curves(rows, tmp_path / "loss.png",
                                 ["loss", "reorder_acc", "retrieval_acc"])
    assert_png(out)


def test_loss_curves_draw_chance_levels_and_marks():
    rows = [{"step": s, "nt_xent": 4.8 - s / 100, "reorder_acc": 0.04 + s / 1e3}
            for s in range(0, 300, 10)]
    fig = plots.loss_curves_figure(rows, ["nt_xent", "reorder_acc", "retrieval_acc"],
                                   chance={"nt_xent": 4.844, "reorder_acc": 1 / 24},
                                   marks={"warm-up ends": 120})
    nt, reorder, retrieval = fig.axes

    def flat_lines(ax):  # (label, y) of horizontal lines, (label, x) of vertical ones
        out = []
        for line in ax.get_lines():
            x, y = line.get_xdata(), line.get_ydata()
            if len(set(y)) == 1 and len(set(x)) > 1:
                out.append(("h", line.get_label(), y[0]))
            elif len(set(x)) == 1:
                out.append(("v", line.get_label(), x[0]))
        return out

    assert ("h", "chance", 4.844) in flat_lines(nt)
    assert ("h", "chance", 1 / 24) in flat_lines(reorder)
    assert not [f for f in flat_lines(retrieval) if f[0] == "h"]  # no chance given for it
    for ax in fig.axes:
        assert ("v", "warm-up ends", 120) in flat_lines(ax)
