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
from echoclr.runs import model_stamp, write_derived
from test_metrics import ASAH_OUTCOME, ASAH_S100B, ASAH_WFNS
from test_user_errors import one_line_error


def write_run(folder, study_ids, y_true, y_score, *, seed: int):
    """study_predictions.csv as ``evaluate`` writes it (stamped with the fingerprint of the
    run's model.pt, here a stand-in file), rows in a shuffled order; returns the order
    (positions into the inputs) the rows were written in."""
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(f"stand-in model {folder.name}".encode())
    table = pd.DataFrame({"study_id": study_ids, "y_true": y_true, "y_score": y_score,
                          "n_videos": 1})
    table = table.sample(frac=1.0, random_state=seed)
    write_derived(folder / "study_predictions.csv", table.to_csv(index=False),
                  model_stamp(folder / "model.pt", folder) | {"split": "test"})
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


def test_cli_compare_refuses_runs_on_different_studies(asah_runs, tmp_path, capsys):
    run_a, _, y, wfns, *_ = asah_runs
    write_run(tmp_path / "other", [f"T{i:03d}" for i in range(len(y))], y, wfns, seed=3)
    other = tmp_path / "other"
    one_line_error(capsys, ["compare", str(run_a), str(other)], "different studies")


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"not valid JSON: {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_small_test_set_reports_what_it_can_and_says_why_not_the_rest(tmp_path, capsys):
    """One positive study: no DeLong test (it needs 2 of each class), but both AUROCs and the
    paired bootstrap, flagged; the result file is written beside run A."""
    ids, y = [f"S{i}" for i in range(6)], np.array([1, 0, 0, 0, 0, 0])
    write_run(tmp_path / "a", ids, y, np.array([0.9, 0.1, 0.2, 0.3, 0.95, 0.4]), seed=0)
    write_run(tmp_path / "b", ids, y, np.array([0.35, 0.6, 0.1, 0.2, 0.3, 0.4]), seed=0)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--n-resamples",
                 "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    written = strict_json(tmp_path / "compare_a_vs_b.json")
    assert written == out and out["out"] == str(tmp_path / "compare_a_vs_b.json")
    assert out["delong"] is None and "at least 2 positive and 2 negative" in out["notes"][0]
    assert out["auroc_a"] == pytest.approx(0.8) and out["auroc_b"] == pytest.approx(0.6)
    boot = out["bootstrap_delta"]
    assert boot["delta"] == pytest.approx(0.2) and boot["ci_reliable"] is False
    assert boot["n_skipped"] > 10  # resamples without the positive study
    assert any("only 1 positive and 5 negative" in w for w in out["warnings"])
    assert any("resamples" in w and "skipped" in w for w in out["warnings"])


def test_result_file_goes_where_out_says(asah_runs, tmp_path, capsys):
    run_a, run_b, *_ = asah_runs
    out = tmp_path / "results" / "ab.json"
    assert main(["compare", str(run_a), str(run_b), "--n-resamples", "20", "--out",
                 str(out)]) == 0
    data = strict_json(out)
    assert data["delong"]["p_value"] == pytest.approx(0.0271757822291882, rel=1e-9)
    assert data["warnings"] == [] and data["bootstrap_delta"]["ci_reliable"] is True
    capsys.readouterr()


def test_studies_of_one_class_give_a_clear_reason(tmp_path, capsys):
    ids = [f"S{i}" for i in range(4)]
    for name in ("a", "b"):
        write_run(tmp_path / name, ids, [0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], seed=0)
    one_line_error(capsys, ["compare", str(tmp_path / "a"), str(tmp_path / "b")],
                   "all negative", "no AUROC")
