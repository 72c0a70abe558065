"""`echoclr compare`, run in-process through the CLI on two evaluated runs.

References: pROC's published DeLong test on its aSAH data, scikit-learn's AUROC, and a naive
paired bootstrap loop over the draws the significance module documents (they index the studies
in run A's row order).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from echoclr.cli import main
from test_metrics import ASAH_OUTCOME, ASAH_S100B, ASAH_WFNS


def write_run(folder, study_ids, y_true, y_score, *, seed: int):
    """study_predictions.csv as ``evaluate`` writes it, rows in a shuffled order; returns the
    order (positions into the inputs) the rows were written in."""
    folder.mkdir(parents=True)
    table = pd.DataFrame({"study_id": study_ids, "y_true": y_true, "y_score": y_score,
                          "n_videos": 1})
    table = table.sample(frac=1.0, random_state=seed)
    table.to_csv(folder / "study_predictions.csv", index=False)
    return table.index.to_numpy()


def naive_paired_bootstrap(y, a, b, n_resamples: int, seed: int):
    draws = np.random.default_rng(seed).integers(0, len(y), size=(n_resamples, len(y)))
    deltas = [roc_auc_score(y[r], a[r]) - roc_auc_score(y[r], b[r])
              for r in draws if 0 < y[r].sum() < len(r)]
    return np.percentile(deltas, [2.5, 97.5]), n_resamples - len(deltas)


@pytest.fixture
def asah_runs(tmp_path):
    y = np.array([c == "P" for c in ASAH_OUTCOME], dtype=int)
    wfns = np.array(list(ASAH_WFNS), float)
    s100b = np.array(ASAH_S100B.split(), float)
    ids = [f"S{i:03d}" for i in range(len(y))]
    order_a = write_run(tmp_path / "wfns", ids, y, wfns, seed=1)
    write_run(tmp_path / "s100b", ids, y, s100b, seed=2)  # another row order: joined by study
    return tmp_path / "wfns", tmp_path / "s100b", y, wfns, s100b, order_a


def test_cli_compare_reproduces_proc_delong_and_a_naive_bootstrap(asah_runs, capsys):
    run_a, run_b, y, wfns, s100b, order = asah_runs
    assert main(["compare", str(run_a), str(run_b), "--n-resamples", "300", "--seed", "7"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_studies"] == 113
    delong = out["delong"]
    # pROC's roc.test(wfns, s100b) on aSAH (DeLong): Z = 2.20898, p = 0.0271758, CI of delta.
    assert delong["z"] == pytest.approx(2.20898359144091, rel=1e-9)
    assert delong["p_value"] == pytest.approx(0.0271757822291882, rel=1e-9)
    assert (delong["ci_low"], delong["ci_high"]) == pytest.approx(
        (0.0104061769564846, 0.174214419249478), rel=1e-9)
    assert delong["auc_a"] == pytest.approx(roc_auc_score(y, wfns), abs=1e-12)
    assert delong["auc_b"] == pytest.approx(roc_auc_score(y, s100b), abs=1e-12)
    boot = out["bootstrap_delta"]
    assert boot["delta"] == pytest.approx(roc_auc_score(y, wfns) - roc_auc_score(y, s100b))
    (low, high), skipped = naive_paired_bootstrap(y[order], wfns[order], s100b[order], 300,
                                                  seed=7)
    assert (boot["ci_low"], boot["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    assert boot["n_resamples"] == 300 and boot["n_skipped"] == skipped


def test_cli_compare_is_antisymmetric(tmp_path, capsys):
    y = np.array([c == "P" for c in ASAH_OUTCOME], dtype=int)
    ids = [f"S{i:03d}" for i in range(len(y))]
    # Same row order in both files, so the bootstrap draws the same studies either way round.
    write_run(tmp_path / "a", ids, y, np.array(list(ASAH_WFNS), float), seed=4)
    write_run(tmp_path / "b", ids, y, np.array(ASAH_S100B.split(), float), seed=4)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    main(["compare", str(run_a), str(run_b), "--n-resamples", "50"])
    ab = json.loads(capsys.readouterr().out)
    main(["compare", str(run_b), str(run_a), "--n-resamples", "50"])
    ba = json.loads(capsys.readouterr().out)
    assert ba["delong"]["z"] == pytest.approx(-ab["delong"]["z"])
    assert ba["delong"]["p_value"] == pytest.approx(ab["delong"]["p_value"])
    assert ba["bootstrap_delta"]["delta"] == pytest.approx(-ab["bootstrap_delta"]["delta"])
    assert ba["bootstrap_delta"]["ci_low"] == pytest.approx(-ab["bootstrap_delta"]["ci_high"])


def test_cli_compare_refuses_runs_on_different_studies(asah_runs, tmp_path):
    run_a, _, y, wfns, *_ = asah_runs
    write_run(tmp_path / "other", [f"T{i:03d}" for i in range(len(y))], y, wfns, seed=3)
    other = tmp_path / "other"
    with pytest.raises(ValueError, match="different studies"):
        main(["compare", str(run_a), str(other)])
