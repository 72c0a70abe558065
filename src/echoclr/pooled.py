"""One verdict from many label draws: the pooled AUROC difference of two inits on one test set.

A label-efficiency cell is repeated over ``D`` draws of the labeled training studies (the same
draw for both inits). Its uncertainty has two sources: which studies were labeled (varies
between draws) and which studies were tested (shared by every draw). ``pooled_delta`` accounts
for both (law of total variance):

- test-set variance: DeLong's structural components of AUROC(a) − AUROC(b), averaged over the
  draws, give the variance of the draw-averaged difference over test sets (DeLong et al. 1988);
- label-draw variance: the between-draw variance of the per-draw differences, divided by ``D``.

Their sum is the variance of the mean difference; the statistic is referred to a t distribution
with Welch–Satterthwaite degrees of freedom (few draws give few degrees of freedom, so five draws
are not read as if they were fifty). With one draw it is DeLong's test. Calibration under a
simulated null and power under a simulated effect are tested in ``tests/test_pooled.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from echoclr.metrics import check_scores
from echoclr.significance import delong_components

METHOD = ("DeLong components averaged over the label draws (test-set variance) plus the "
          "between-draw variance of the differences, Welch–Satterthwaite t")


def pooled_delta(y_true, scores_a, scores_b, *, alpha: float = 0.05) -> dict:
    """Pooled test of mean AUROC(a) − AUROC(b) over paired label draws on one test set.

    Args:
        y_true: (n,) test labels in {0, 1}, both classes, >= 2 of each.
        scores_a, scores_b: (D, n) scores of the two inits, row d trained on label draw d.
        alpha: 1 − the level of the interval.

    Returns:
        n_draws, auroc_a and auroc_b (lists of D), delta_mean, se, var_test, var_draws, df,
        t, p_pooled (two-sided), ci_low/ci_high (t interval of delta_mean), draws_won (draws
        with AUROC(a) > AUROC(b)), method.
    """
    a = np.atleast_2d(np.asarray(scores_a, dtype=float))
    b = np.atleast_2d(np.asarray(scores_b, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"pooled_delta: scores_a {a.shape} and scores_b {b.shape} differ")
    y, _ = check_scores(y_true, a[0], name="scores_a[0]")
    for name, block in (("scores_a", a), ("scores_b", b)):
        if not np.isfinite(block).all():
            raise ValueError(f"pooled_delta: {name} holds non-finite scores")
    m, n = int(y.sum()), int((1 - y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"pooled_delta needs >= 2 positives and negatives, got {m} and {n}")
    d = len(a)
    v10_a, v01_a = delong_components(y, a)  # (D, m), (D, n)
    v10_b, v01_b = delong_components(y, b)
    auroc_a, auroc_b = v10_a.mean(axis=1), v10_b.mean(axis=1)
    deltas = auroc_a - auroc_b
    # Test-set variance of the draw-averaged difference (DeLong on averaged components).
    d10, d01 = (v10_a - v10_b).mean(axis=0), (v01_a - v01_b).mean(axis=0)
    var_test = float(np.var(d10, ddof=1) / m + np.var(d01, ddof=1) / n)
    var_draws = float(np.var(deltas, ddof=1) / d) if d > 1 else 0.0
    var = var_test + var_draws
    # Welch–Satterthwaite: each variance part with its own degrees of freedom.
    parts = var_test**2 / (min(m, n) - 1) + (var_draws**2 / (d - 1) if d > 1 else 0.0)
    df = var**2 / parts if parts > 0 else float("inf")
    delta = float(deltas.mean())
    se = float(np.sqrt(var))
    if se > 0:
        t_stat = delta / se
        p = float(2 * student_t.sf(abs(t_stat), df))
        half = float(student_t.ppf(1 - alpha / 2, df) * se)
    else:  # identical rankings in every draw
        t_stat, p, half = (0.0, 1.0, 0.0) if delta == 0 else (np.copysign(np.inf, delta), 0.0, 0.0)
    return {"n_draws": d, "auroc_a": auroc_a.tolist(), "auroc_b": auroc_b.tolist(),
            "delta_mean": delta, "se": se, "var_test": var_test, "var_draws": var_draws,
            "df": float(df), "t": float(t_stat), "p_pooled": p,
            "ci_low": delta - half, "ci_high": delta + half,
            "draws_won": int((deltas > 0).sum()),
            "method": METHOD if d > 1 else "DeLong (one draw), t with min(m, n) - 1 df"}
