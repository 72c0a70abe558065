"""``echoclr compare``: are two fine-tuned runs' test AUROCs different?

DeLong's paired test and a paired study-bootstrap CI of ΔAUROC (A − B), on the study predictions
``evaluate`` wrote for both runs on the same studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr import significance
from echoclr.options import opt, required


@dataclass(frozen=True)
class CompareConfig:
    run_a: str = required("Folder holding run A's study_predictions.csv (an evaluate output).")
    run_b: str = required("Folder holding run B's study_predictions.csv, on the same studies.")
    n_resamples: int = opt(1000, "Paired bootstrap resamples over studies.")
    seed: int = opt(0, "Seed of the bootstrap.")


def compare(cfg: CompareConfig) -> dict:
    """:func:`compare_runs` of the two runs."""
    return compare_runs(cfg.run_a, cfg.run_b, n_resamples=cfg.n_resamples, seed=cfg.seed)


def compare_runs(run_a: str | Path, run_b: str | Path, *, n_resamples: int = 1000,
                 seed: int = 0) -> dict:
    """DeLong test and paired study-bootstrap CI of ΔAUROC (A − B) on the same test studies."""
    a = pd.read_csv(Path(run_a) / "study_predictions.csv", dtype={"study_id": str})
    b = pd.read_csv(Path(run_b) / "study_predictions.csv", dtype={"study_id": str})
    both = a.merge(b, on="study_id", suffixes=("_a", "_b"))
    if len(both) != len(a) or len(both) != len(b):
        raise ValueError(f"{run_a} and {run_b} were evaluated on different studies "
                         f"({len(a)} vs {len(b)}, {len(both)} shared): run evaluate on one split")
    if not np.array_equal(both["y_true_a"], both["y_true_b"]):
        raise ValueError(f"{run_a} and {run_b} disagree on study labels")
    y = both["y_true_a"].to_numpy()
    delong = significance.delong_test(y, both["y_score_a"].to_numpy(),
                                      both["y_score_b"].to_numpy())
    boot = significance.paired_bootstrap_delta(y, both["y_score_a"].to_numpy(),
                                               both["y_score_b"].to_numpy(),
                                               n_resamples=n_resamples, seed=seed)
    return {"run_a": str(run_a), "run_b": str(run_b), "n_studies": int(len(y)),
            "delong": delong, "bootstrap_delta": boot}
