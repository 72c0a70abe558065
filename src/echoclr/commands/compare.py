"""``echoclr compare``: are two fine-tuned runs' test AUROCs different?

DeLong's paired test and a paired study-bootstrap CI of ΔAUROC (A − B), on the study predictions
``evaluate`` wrote for both runs on the same studies, read only while they belong to each run's
current model. What too few studies cannot support is left out with its reason, and intervals
from too few studies are flagged; the result is printed and written to a JSON file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr import significance
from echoclr.errors import UserError
from echoclr.metrics import auroc
from echoclr.options import opt, required
from echoclr.runs import STUDY_PREDICTIONS, read_current
from echoclr.valid_json import write_json


@dataclass(frozen=True)
class CompareConfig:
    run_a: str = required("Run A: a folder evaluate wrote study_predictions.csv into (the run "
                          "folder, or its --out such as RUN/test).")
    run_b: str = required("Run B: the same for the other run, evaluated on the same studies.")
    out: str | None = opt(None, "JSON file of the result; None: compare_A_vs_B.json beside run "
                                "A (in its parent folder).")
    n_resamples: int = opt(1000, "Paired bootstrap resamples over studies.")
    seed: int = opt(0, "Seed of the bootstrap.")


def compare(cfg: CompareConfig) -> dict:
    """:func:`compare_runs` of the two runs, written to ``cfg.out``; returns the result (with
    the file it went to under ``"out"``)."""
    result = compare_runs(cfg.run_a, cfg.run_b, n_resamples=cfg.n_resamples, seed=cfg.seed)
    out = Path(cfg.out) if cfg.out else default_out(cfg.run_a, cfg.run_b)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["out"] = str(out)
    write_json(out, result)
    return result


def default_out(run_a: str | Path, run_b: str | Path) -> Path:
    """``compare_A_vs_B.json`` in run A's parent folder; a split subfolder (RUN/test) is named
    with its run."""
    a, b = Path(run_a).resolve(), Path(run_b).resolve()
    names = [p.name for p in (a, b)]
    if names[0] == names[1]:
        names = [f"{p.parent.name}_{p.name}" for p in (a, b)]
    return a.parent / f"compare_{names[0]}_vs_{names[1]}.json"


def _study_scores(run: str | Path) -> pd.DataFrame:
    metrics = Path(run) / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("classes"):
        raise UserError(f"{metrics}: a multi-class evaluation (per-class and macro AUROC are "
                        "in it); compare tests two binary runs' study AUROCs")
    text = read_current(Path(run) / STUDY_PREDICTIONS)  # refuses another model's
    return pd.read_csv(io.StringIO(text), dtype={"study_id": str})


def compare_runs(run_a: str | Path, run_b: str | Path, *, n_resamples: int = 1000,
                 seed: int = 0) -> dict:
    """DeLong test and paired study-bootstrap CI of ΔAUROC (A − B) on the same test studies.

    Returns:
        run_a, run_b, n_studies, n_pos, n_neg, auroc_a, auroc_b, delta; ``delong``
        (:func:`~echoclr.significance.delong_test`, None with fewer than 2 studies of a
        class); ``bootstrap_delta`` (:func:`~echoclr.significance.paired_bootstrap_delta`
        with ``ci_reliable``); ``notes`` (what was left out, and why) and ``warnings``
        (:func:`~echoclr.significance.interval_warnings`).

    Raises:
        UserError: outputs of another model, runs on different studies or labels, or studies
            of one class only (no AUROC).
    """
    a, b = _study_scores(run_a), _study_scores(run_b)
    both = a.merge(b, on="study_id", suffixes=("_a", "_b"))
    if len(both) != len(a) or len(both) != len(b):
        raise UserError(f"{run_a} and {run_b} were evaluated on different studies "
                        f"({len(a)} vs {len(b)}, {len(both)} shared): run evaluate on one split "
                        "of one cache for both")
    if not np.array_equal(both["y_true_a"], both["y_true_b"]):
        raise UserError(f"{run_a} and {run_b} disagree on study labels: evaluate both on the "
                        "same cache and task")
    y = both["y_true_a"].to_numpy()
    score_a, score_b = both["y_score_a"].to_numpy(), both["y_score_b"].to_numpy()
    n_pos, n_neg = significance.class_counts(y)
    if not (n_pos and n_neg):
        raise UserError(f"{run_a}, {run_b}: the {len(y)} studies are all "
                        f"{'positive' if n_pos else 'negative'}, so there is no AUROC to "
                        "compare: evaluate both on a split with both classes")
    result = {"run_a": str(run_a), "run_b": str(run_b), "n_studies": len(y), "n_pos": n_pos,
              "n_neg": n_neg, "auroc_a": auroc(y, score_a), "auroc_b": auroc(y, score_b)}
    result["delta"] = result["auroc_a"] - result["auroc_b"]
    notes = []
    if min(n_pos, n_neg) >= 2:
        result["delong"] = significance.delong_test(y, score_a, score_b)
    else:
        result["delong"] = None
        notes.append(f"no DeLong test: it needs at least 2 positive and 2 negative studies, "
                     f"these are {n_pos} and {n_neg}")
    boot = significance.paired_bootstrap_delta(y, score_a, score_b, n_resamples=n_resamples,
                                               seed=seed)
    warnings = significance.interval_warnings(n_pos, n_neg, n_resamples, boot["n_skipped"])
    boot["ci_reliable"] = not warnings and bool(np.isfinite([boot["ci_low"],
                                                             boot["ci_high"]]).all())
    return result | {"bootstrap_delta": boot, "notes": notes, "warnings": warnings}
