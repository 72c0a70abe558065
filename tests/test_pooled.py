"""The pooled verdict over label draws: DeLong's components against a naive loop, the one-draw
case against DeLong, calibration under a simulated null and power under a simulated effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from echoclr.pooled import pooled_delta
from echoclr.significance import delong_components, delong_test


def naive_components(y, s):
    """O(m·n) structural components straight from their definition."""
    pos, neg = s[y == 1], s[y == 0]
    v10 = np.array([np.mean((p > neg) + 0.5 * (p == neg)) for p in pos])
    v01 = np.array([np.mean((pos > q) + 0.5 * (pos == q)) for q in neg])
    return v10, v01


def simulate(rng, *, n=200, prevalence=0.35, draws=5, draw_sd=0.6, effect=0.0):
    """One experiment: a test set and ``draws`` paired label draws of two inits.

    Each init's score is signal x weighted by a per-draw weight (a shared draw effect plus the
    init's own draw noise, sd ``draw_sd``), a per-study bias of the init (the same in every draw:
    it does not average out over draws) and per-draw noise. ``effect`` adds separation to a.
    """
    y = (rng.random(n) < prevalence).astype(int)
    x = rng.normal(0, 1, n) + y
    bias_a, bias_b = rng.normal(0, 0.7, n), rng.normal(0, 0.7, n)
    a, b = [], []
    for _ in range(draws):
        shared = rng.normal(0, 0.3)
        a.append((1 + shared + rng.normal(0, draw_sd)) * x + bias_a + rng.normal(0, 0.7, n)
                 + effect * y)
        b.append((1 + shared + rng.normal(0, draw_sd)) * x + bias_b + rng.normal(0, 0.7, n))
    return y, np.array(a), np.array(b)


def test_components_match_the_naive_definition_with_ties():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(7), np.zeros(11)].astype(int)
    s = np.round(rng.normal(size=(2, 18)), 1)  # coarse: many ties
    v10, v01 = delong_components(y, s)
    for k in range(2):
        r10, r01 = naive_components(y, s[k])
        np.testing.assert_allclose(v10[k], r10)
        np.testing.assert_allclose(v01[k], r01)


def test_one_draw_is_delong():
    rng = np.random.default_rng(1)
    y, a, b = simulate(rng, draws=1)
    pooled = pooled_delta(y, a, b)
    ref = delong_test(y, a[0], b[0])
    assert pooled["n_draws"] == 1 and pooled["var_draws"] == 0.0
    assert pooled["delta_mean"] == pytest.approx(ref["delta"])
    assert pooled["se"] == pytest.approx(ref["se"])
    # t with min(m, n) - 1 degrees of freedom instead of the normal: close, slightly wider.
    assert ref["p_value"] <= pooled["p_pooled"] <= ref["p_value"] + 0.02


def test_mean_and_draws_won_are_those_of_the_single_draws():
    rng = np.random.default_rng(2)
    y, a, b = simulate(rng, draws=6, effect=0.3)
    pooled = pooled_delta(y, a, b)
    single = [delong_test(y, sa, sb)["delta"] for sa, sb in zip(a, b)]
    assert pooled["delta_mean"] == pytest.approx(np.mean(single))
    assert pooled["draws_won"] == sum(d > 0 for d in single)
    assert pooled["var_draws"] == pytest.approx(np.var(single, ddof=1) / 6)
    assert pooled["ci_low"] < pooled["delta_mean"] < pooled["ci_high"]


def test_calibrated_under_a_simulated_null_where_ignoring_draws_is_not():
    rng = np.random.default_rng(3)
    n_sim = 400
    pooled_rejects, test_only_rejects = 0, 0
    for _ in range(n_sim):
        r = pooled_delta(*simulate(rng))
        pooled_rejects += r["p_pooled"] < 0.05
        # The same statistic with the label-draw variance left out:
        test_only_rejects += 2 * norm.sf(abs(r["delta_mean"]) / np.sqrt(r["var_test"])) < 0.05
    noise = 2 * np.sqrt(0.05 * 0.95 / n_sim)  # two binomial standard errors
    assert pooled_rejects / n_sim <= 0.05 + noise
    assert test_only_rejects / n_sim > 0.15  # the draw variance is what keeps it calibrated


def test_power_under_a_simulated_effect():
    rng = np.random.default_rng(4)
    p = [pooled_delta(*simulate(rng, draws=10, draw_sd=0.3, effect=0.8))["p_pooled"]
         for _ in range(100)]
    assert np.mean(np.array(p) < 0.05) >= 0.8


def test_refuses_mismatched_or_one_class_inputs():
    y = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="differ"):
        pooled_delta(y, np.zeros((2, 6)), np.zeros((3, 6)))
    with pytest.raises(ValueError, match=">= 2 positives"):
        pooled_delta(np.array([0, 0, 0, 1, 0, 0]), np.ones((2, 6)), np.ones((2, 6)))


def reference_pooled(y, a, b, alpha=0.05):
    """Every figure of pooled_delta recomputed from the naive components and the textbook
    Welch–Satterthwaite formula, with scipy's t distribution."""
    from scipy.stats import t as student_t

    m, n, d = int(y.sum()), int((1 - y).sum()), len(a)
    comps = [(naive_components(y, sa), naive_components(y, sb)) for sa, sb in zip(a, b)]
    deltas = np.array([ca[0].mean() - cb[0].mean() for ca, cb in comps])
    d10 = np.mean([ca[0] - cb[0] for ca, cb in comps], axis=0)
    d01 = np.mean([ca[1] - cb[1] for ca, cb in comps], axis=0)
    var_test = d10.var(ddof=1) / m + d01.var(ddof=1) / n
    var_draws = deltas.var(ddof=1) / d if d > 1 else 0.0
    var = var_test + var_draws
    df = var**2 / (var_test**2 / (min(m, n) - 1)
                   + (var_draws**2 / (d - 1) if d > 1 else 0.0))
    t = deltas.mean() / np.sqrt(var)
    half = student_t.ppf(1 - alpha / 2, df) * np.sqrt(var)
    return {"var_test": var_test, "var_draws": var_draws, "df": df, "t": t,
            "p_pooled": 2 * student_t.sf(abs(t), df), "ci_low": deltas.mean() - half,
            "ci_high": deltas.mean() + half, "delta_mean": deltas.mean()}


@pytest.mark.parametrize("draws, alpha", [(1, 0.05), (4, 0.05), (7, 0.1)])
def test_every_figure_matches_an_independent_computation(draws, alpha):
    rng = np.random.default_rng(10 + draws)
    y, a, b = simulate(rng, n=60, draws=draws, effect=0.2)
    got = pooled_delta(y, a, b, alpha=alpha)
    for key, want in reference_pooled(y, a, b, alpha).items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key
    assert got["auroc_a"] == pytest.approx([naive_components(y, s)[0].mean() for s in a])
    assert got["auroc_b"] == pytest.approx([naive_components(y, s)[0].mean() for s in b])
    assert got["method"].startswith("DeLong (one draw)" if draws == 1 else "DeLong components")


def test_identical_or_rank_equal_scores_give_no_difference_and_a_certain_one_is_infinite():
    rng = np.random.default_rng(5)
    y, a, _ = simulate(rng, n=40, draws=3)
    same = pooled_delta(y, a, 2 * a + 1)  # the same ranking in every draw
    assert (same["delta_mean"], same["p_pooled"], same["t"]) == (0.0, 1.0, 0.0)
    assert same["ci_low"] == same["ci_high"] == 0.0 and same["draws_won"] == 0
    perfect = np.tile(y.astype(float), (3, 1))  # AUROC 1 in every draw
    constant = np.zeros_like(perfect)  # AUROC 0.5 in every draw, no spread
    sure = pooled_delta(y, perfect, constant)
    assert sure["delta_mean"] == 0.5 and sure["se"] == 0.0 and sure["df"] == float("inf")
    assert sure["t"] == float("inf") and sure["p_pooled"] == 0.0
    assert sure["ci_low"] == sure["ci_high"] == 0.5 and sure["draws_won"] == 3
    worse = pooled_delta(y, constant, perfect)
    assert worse["t"] == float("-inf") and worse["draws_won"] == 0


def test_a_tied_draw_is_not_won():
    rng = np.random.default_rng(6)
    y, a, b = simulate(rng, n=50, draws=3, effect=1.0)
    b[1] = a[1]  # draw 1: a tie
    got = pooled_delta(y, a, b)
    deltas = np.array(got["auroc_a"]) - np.array(got["auroc_b"])
    assert deltas[1] == 0 and got["draws_won"] == int((deltas > 0).sum()) == 2


def test_two_of_each_class_is_enough_and_bad_scores_are_named():
    y = np.array([0, 1, 0, 1, 0])
    scores = np.array([[0.1, 0.9, 0.3, 0.4, 0.2], [0.2, 0.8, 0.1, 0.7, 0.3]])
    assert pooled_delta(y, scores, scores[::-1])["n_draws"] == 2  # m = 2, n = 3
    assert pooled_delta(1 - y[:4], scores[:, :4], scores[::-1, :4])["n_draws"] == 2  # m=n=2
    bad = scores.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="scores_a holds non-finite"):
        pooled_delta(y, bad, scores)
    with pytest.raises(ValueError, match="scores_b holds non-finite"):
        pooled_delta(y, scores, bad)
    with pytest.raises(ValueError, match=r"scores_a\[0\] holds 1 non-finite"):
        pooled_delta(y, bad[::-1], scores)
    with pytest.raises(ValueError, match="got 1 and 4"):
        pooled_delta(np.array([0, 1, 0, 0, 0]), scores, scores)
    listed = pooled_delta(y, scores.tolist(), scores[::-1].tolist())  # lists are arrays too
    assert listed["delta_mean"] == pytest.approx(pooled_delta(y, scores, scores[::-1])["delta_mean"])
