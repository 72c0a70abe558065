"""Metrics against scikit-learn, naive bootstrap loops, a slow DeLong and pROC's own values."""

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from echoclr import metrics, report, significance


def tied_data(seed: int, n: int = 300):
    """Labels and scores rounded to one decimal, so many scores tie within and across classes."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    y_score = np.round(rng.normal(size=n) + 0.8 * y_true, 1)
    return y_true, y_score


# --- point metrics ---


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_metrics_equal_sklearn_with_ties(seed):
    y_true, y_score = tied_data(seed)
    assert metrics.auroc(y_true, y_score) == pytest.approx(
        roc_auc_score(y_true, y_score), abs=1e-12)
    assert metrics.average_precision(y_true, y_score) == pytest.approx(
        average_precision_score(y_true, y_score), abs=1e-12)
    threshold = 0.3  # a value the rounded scores hit exactly: tests the >= convention
    y_pred = (y_score >= threshold).astype(int)
    got = metrics.threshold_metrics(y_true, y_score, threshold)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert got["sensitivity"] == pytest.approx(recall_score(y_true, y_pred))
    assert got["specificity"] == pytest.approx(recall_score(y_true, y_pred, pos_label=0))
    assert got["ppv"] == pytest.approx(precision_score(y_true, y_pred))
    assert got["npv"] == pytest.approx(precision_score(y_true, y_pred, pos_label=0))
    assert got["threshold"] == threshold


def test_undefined_ppv_is_nan_and_bad_input_is_refused():
    got = metrics.threshold_metrics([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert np.isnan(got["ppv"]) and got["sensitivity"] == 0 and got["specificity"] == 1
    with pytest.raises(ValueError, match="both classes"):
        metrics.auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        metrics.auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.auroc([0, 1, 1], [0.1, np.nan, 0.3])


def test_youden_threshold_maximises_j_over_all_cut_points():
    y_true, y_score = tied_data(3)

    def youden(cut):
        positive = y_score >= cut
        return positive[y_true == 1].mean() + (~positive)[y_true == 0].mean() - 1

    cuts = np.unique(y_score)[::-1]  # highest first, so ties go to the highest threshold
    expected = cuts[np.argmax([youden(c) for c in cuts])]
    assert metrics.youden_threshold(y_true, y_score) == expected


# --- study aggregation ---


def test_aggregate_by_study_averages_uneven_video_counts():
    videos = pd.DataFrame({
        "study_id": ["b", "a", "b", "c", "b", "a"],
        "y_true": [1, 0, 1, 1, 1, 0],
        "y_score": [0.9, 0.2, 0.6, 0.4, 0.3, 0.4],
    })
    studies = metrics.aggregate_by_study(videos)
    assert studies["study_id"].tolist() == ["a", "b", "c"]
    assert studies["y_true"].tolist() == [0, 1, 1]
    assert studies["y_score"].tolist() == pytest.approx([0.3, 0.6, 0.4])
    assert studies["n_videos"].tolist() == [2, 3, 1]
    renamed = metrics.aggregate_by_study(videos.rename(columns={"y_score": "p"}), score="p")
    assert renamed["p"].tolist() == pytest.approx([0.3, 0.6, 0.4])


def test_aggregate_by_study_names_a_study_with_mixed_labels():
    videos = pd.DataFrame({"study_id": ["s1", "s1", "s2"], "y_true": [0, 1, 1],
                           "y_score": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="s1"):
        metrics.aggregate_by_study(videos)


# --- bootstrap ---


def naive_bootstrap(y_true, y_score, metric_fn, n_resamples, seed, clusters=None):
    """The documented draws, then one metric call per resample; returns (values, n_skipped)."""
    rng = np.random.default_rng(seed)
    if clusters is None:
        rows_of_unit = [np.array([i]) for i in range(len(y_true))]
    else:
        rows_of_unit = [np.flatnonzero(clusters == c) for c in np.unique(clusters)]
    draws = rng.integers(0, len(rows_of_unit), size=(n_resamples, len(rows_of_unit)))
    values, skipped = [], 0
    for draw in draws:
        idx = np.concatenate([rows_of_unit[u] for u in draw])
        if len(np.unique(y_true[idx])) < 2:
            skipped += 1
            continue
        values.append(metric_fn(y_true[idx], y_score[idx]))
    return np.array(values), skipped


@pytest.mark.parametrize("metric_fn, reference", [
    (metrics.auroc, roc_auc_score),
    (metrics.average_precision, average_precision_score),
    (roc_auc_score, roc_auc_score),
    (lambda y, s: balanced_accuracy_score(y, s >= 0.2),  # not batched: one call per resample
     lambda y, s: balanced_accuracy_score(y, s >= 0.2)),
])
def test_bootstrap_equals_naive_loop_at_2p5_and_97p5(metric_fn, reference):
    y_true, y_score = tied_data(4, n=120)
    got = significance.bootstrap_ci(y_true, y_score, metric_fn, n_resamples=200, seed=7)
    values, skipped = naive_bootstrap(y_true, y_score, reference, 200, seed=7)
    assert got["n_skipped"] == skipped == 0 and got["n_resamples"] == 200
    assert got["value"] == pytest.approx(reference(y_true, y_score), abs=1e-12)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)
    assert got["ci_low"] < np.percentile(values, 5)  # not the 90 % interval of public code


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_score = tied_data(5)
    first = significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=200, seed=3)
    assert significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=200, seed=3) == first
    other = significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=200, seed=4)
    assert other["ci_low"] != first["ci_low"]


def test_cluster_bootstrap_equals_naive_cluster_loop():
    rng = np.random.default_rng(6)
    study_label = rng.integers(0, 2, 40)
    n_videos = rng.integers(1, 5, 40)  # uneven videos per study
    clusters = np.repeat(np.arange(40) * 7 + 100, n_videos)  # labels need not be 0..k-1
    y_true = np.repeat(study_label, n_videos)
    y_score = np.round(rng.normal(size=len(y_true)) + y_true, 1)
    got = significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=200, seed=1,
                               clusters=clusters)
    values, skipped = naive_bootstrap(y_true, y_score, roc_auc_score, 200, 1, clusters=clusters)
    assert got["n_skipped"] == skipped
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)


def test_cluster_bootstrap_of_duplicated_rows_equals_row_bootstrap_of_unique_rows():
    y_true, y_score = tied_data(8, n=80)
    copies = 3
    dup_true, dup_score = np.repeat(y_true, copies), np.repeat(y_score, copies)
    study = np.repeat(np.arange(80), copies)
    unique_rows = significance.bootstrap_ci(y_true, y_score, metrics.auroc, seed=2)
    clustered = significance.bootstrap_ci(dup_true, dup_score, metrics.auroc, seed=2, clusters=study)
    naive_rows = significance.bootstrap_ci(dup_true, dup_score, metrics.auroc, seed=2)
    assert (clustered["ci_low"], clustered["ci_high"]) == pytest.approx(
        (unique_rows["ci_low"], unique_rows["ci_high"]), abs=1e-12)
    # Treating the copies as independent rows would pretend to 3x the data: a narrower interval.
    assert naive_rows["ci_high"] - naive_rows["ci_low"] < 0.75 * (
        clustered["ci_high"] - clustered["ci_low"])


def test_one_class_resamples_are_skipped_and_counted():
    y_true = np.array([1, 0, 0, 0, 0, 0])
    y_score = np.array([0.9, 0.1, 0.5, 0.3, 0.95, 0.2])
    got = significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=300, seed=0)
    values, skipped = naive_bootstrap(y_true, y_score, roc_auc_score, 300, seed=0)
    assert got["n_skipped"] == skipped > 50  # P(no positive drawn) = (5/6)^6 ~ 0.33
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12)


def test_bootstrap_of_1000_rows_is_fast():
    y_true, y_score = tied_data(9, n=1000)
    significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=10)  # warm-up
    start = time.perf_counter()
    significance.bootstrap_ci(y_true, y_score, metrics.auroc, n_resamples=1000)
    assert time.perf_counter() - start < 1.0


def test_paired_bootstrap_delta_equals_naive_loop():
    y_true, score_a = tied_data(10, n=150)
    score_b = np.round(score_a + np.random.default_rng(0).normal(size=150), 1)
    clusters = np.arange(150) // 2
    got = significance.paired_bootstrap_delta(y_true, score_a, score_b, n_resamples=150, seed=5,
                                         clusters=clusters)
    stacked = np.column_stack([score_a, score_b])
    deltas, skipped = naive_bootstrap(
        y_true, stacked, lambda y, s: roc_auc_score(y, s[:, 0]) - roc_auc_score(y, s[:, 1]),
        150, seed=5, clusters=clusters)
    assert got["n_skipped"] == skipped
    assert got["delta"] == pytest.approx(
        roc_auc_score(y_true, score_a) - roc_auc_score(y_true, score_b), abs=1e-12)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        tuple(np.percentile(deltas, [2.5, 97.5])), abs=1e-12)


def test_evaluate_scores_reports_every_metric_from_one_set_of_resamples():
    y_true, y_score = tied_data(11, n=200)
    report = significance.evaluate_scores(y_true, y_score, threshold=0.4, n_resamples=200, seed=1)
    for key in significance.CI_METRICS:
        assert report[key]["ci_low"] <= report[key]["value"] <= report[key]["ci_high"], key
    assert report["auroc"] == {k: v for k, v in significance.bootstrap_ci(
        y_true, y_score, metrics.auroc, n_resamples=200, seed=1).items()
        if k in ("value", "ci_low", "ci_high")} | {"ci_reliable": True}
    assert report["warnings"] == []  # 200 rows of both classes, no resample skipped
    assert report["sensitivity"]["value"] == report["at_threshold"]["sensitivity"]
    assert report["at_threshold"]["threshold"] == 0.4 and report["at_0.5"]["threshold"] == 0.5
    assert (report["n"], report["n_pos"]) == (200, int(y_true.sum()))
    assert (report["n_resamples"], report["n_skipped"], report["seed"]) == (200, 0, 1)


# --- DeLong ---


def slow_delong(y_true, score_a, score_b):
    """DeLong et al. 1988 written out: structural components by double loops, then z."""
    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    pos = [i for i in range(len(y_true)) if y_true[i] == 1]
    neg = [j for j in range(len(y_true)) if y_true[j] == 0]
    m, n = len(pos), len(neg)
    v10, v01 = np.zeros((2, m)), np.zeros((2, n))
    for r, score in enumerate((score_a, score_b)):
        for a, i in enumerate(pos):
            for b, j in enumerate(neg):
                v10[r, a] += psi(score[i], score[j]) / n
                v01[r, b] += psi(score[i], score[j]) / m
    auc = v10.mean(axis=1)
    s10, s01 = np.zeros((2, 2)), np.zeros((2, 2))
    for r in range(2):
        for t in range(2):
            s10[r, t] = sum((v10[r, a] - auc[r]) * (v10[t, a] - auc[t]) for a in range(m)) / (m - 1)
            s01[r, t] = sum((v01[r, b] - auc[r]) * (v01[t, b] - auc[t]) for b in range(n)) / (n - 1)
    s = s10 / m + s01 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    return auc, (auc[0] - auc[1]) / np.sqrt(var)


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_equals_slow_reference_with_ties(seed):
    y_true, score_a = tied_data(seed, n=90)
    score_b = np.round(0.5 * score_a + np.random.default_rng(seed).normal(size=90), 0)  # heavy ties
    got = significance.delong_test(y_true, score_a, score_b)
    auc, z = slow_delong(y_true, score_a, score_b)
    assert (got["auc_a"], got["auc_b"]) == pytest.approx(tuple(auc), abs=1e-12)
    assert got["z"] == pytest.approx(z, rel=1e-9)
    assert got["delta"] / got["se"] == pytest.approx(z, rel=1e-9)


def test_delong_identical_and_perfect_scores():
    y_true, y_score = tied_data(12, n=100)
    same = significance.delong_test(y_true, y_score, y_score)
    assert same["delta"] == 0 and same["se"] == 0 and same["z"] == 0 and same["p_value"] == 1
    perfect = y_true + 0.1 * np.random.default_rng(0).random(100)
    noise = np.random.default_rng(1).random(100)
    got = significance.delong_test(y_true, perfect, noise)
    assert got["auc_a"] == 1 and got["delta"] == pytest.approx(1 - roc_auc_score(y_true, noise))
    assert got["p_value"] < 1e-6 and got["ci_low"] > 0


# pROC's aSAH data (Turck et al., Intensive Care Med 36:107, 2010; shipped with the R package
# pROC): 113 patients, outcome P = poor (41), G = good; s100b and ndka biomarkers; WFNS grade.
ASAH_OUTCOME = (
    "GGGGPPGPGGPGPPGGPGPPPGPGGGGGGGGGPGGPPGPPGGGGGGGGGPPGGGPGGGPGPGGPPPGPPGPPPPGGGPPGPGGGGGGPG"
    "GGGGGGGGGGGPPPPPPGGGPGGG")
ASAH_WFNS = (
    "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421451"
    "154221113125225552445111")
ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 0.07
0.33 0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 0.35 0.48
0.09 0.96 0.25 0.5 0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.1
0.14 0.15 0.07 0.06 0.77 0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 0.71 0.08 0.26 0.08
0.16 0.09 0.13 0.1 0.08 0.11 0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 0.05 0.24 0.38 0.1 0.15
0.08 0.14 0.1 0.07 0.04 0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.5 0.48
"""
ASAH_NDKA = """
3.01 8.54 8.09 10.42 17.4 12.75 6 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75 11.6
16.11 32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81 9.85 18.21
5.03 14.04 21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06 12.59 13.56 3.87
9.44 7.66 12.98 419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39 11.09 12.22 13.67 17.21
22.63 12.9 9.7 21.57 8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63 4.61 21.48 17.3 12.71 9.44
11.07 19.46 10.83 5.37 11.97 7.75 9.83 10.55 28.49 8.53 12.57 12.9 46.83 11.68 12.67 9.01
9.57 34.06 11.72 14.26 47.61 11.67 24.58 10.33 13.87 15.89 22.43 6.79 13.45
"""


@pytest.mark.parametrize("name_a, name_b, z, p_value, ci_low, ci_high", [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914,
     0.0488706064228094),
])
def test_delong_reproduces_proc_roc_test_on_asah(name_a, name_b, z, p_value, ci_low, ci_high):
    """Expected values: pROC's own test suite, tests/testthat/test-roc.test.R (roc.test with the
    default DeLong method on aSAH). pROC's documentation prints the first as Z = 2.209,
    p-value = 0.02718 and the s100b AUC as 0.7314 (95 % CI 0.6301-0.8326, DeLong)."""
    y_true = np.array([c == "P" for c in ASAH_OUTCOME], dtype=int)
    scores = {"s100b": np.array(ASAH_S100B.split(), float),
              "ndka": np.array(ASAH_NDKA.split(), float),
              "wfns": np.array(list(ASAH_WFNS), float)}
    assert (len(y_true), y_true.sum()) == (113, 41)
    assert all(len(s) == 113 for s in scores.values())
    got = significance.delong_test(y_true, scores[name_a], scores[name_b])
    assert got["z"] == pytest.approx(z, rel=1e-10)
    assert got["p_value"] == pytest.approx(p_value, rel=1e-10)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci_low, ci_high), rel=1e-10)
    # A constant score has AUROC 0.5 and no variance, so the interval is that of s100b alone.
    s100b = significance.delong_test(y_true, scores["s100b"], np.zeros(113))
    assert round(s100b["auc_a"], 4) == 0.7314
    assert (round(s100b["ci_low"] + 0.5, 4), round(s100b["ci_high"] + 0.5, 4)) == (0.6301, 0.8326)


# --- formatting ---


def test_formatting_helpers():
    assert report.mean_sd([0.70, 0.72, 0.71]) == "0.71 ± 0.01"
    assert report.mean_sd([0.71]) == "0.71"  # one seed: no SD to show
    assert report.format_ci({"value": 0.7213, "ci_low": 0.6871, "ci_high": 0.7502}) == \
        "0.72 [0.69, 0.75]"
    assert report.format_ci({"delta": 0.05, "ci_low": -0.01, "ci_high": 0.11}, digits=3) == \
        "0.050 [-0.010, 0.110]"
