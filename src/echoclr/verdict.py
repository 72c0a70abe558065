"""An experiment's finished cells → results.csv rows and the pooled verdict (pooled.csv).

One pooled row per (task, split, fraction, init, readout): the mean and SD of test AUROC over
the label draws and, against the reference init with the same readout, the pooled difference of
:func:`echoclr.pooled.pooled_delta` over the draws both have. Each init's *best* readout at a
fraction is chosen by a rule fixed before any test result is read: the highest mean
validation-study AUROC over its draws (ties: the first in probe, finetune, lpft order); a
``best`` row compares the best readouts of an init and of the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.metrics import auroc
from echoclr.pooled import pooled_delta
from echoclr.runs import VAL_STUDIES

SELECTION_RULE = ("each init's best readout at a fraction is the one with the highest mean "
                  "validation-study AUROC over its label draws (ties: probe, finetune, lpft)")


def _study_scores(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"study_id": str}).sort_values("study_id")


def _val_auroc(run: Path) -> float:
    """Validation-study AUROC of a cell's model (NaN when validation holds one class)."""
    path = run / VAL_STUDIES
    if not path.is_file():
        return float("nan")
    val = _study_scores(path)
    return auroc(val["y_true"], val["y_score"]) if val["y_true"].nunique() == 2 else float("nan")


def collect_results(out: Path, splits) -> pd.DataFrame:
    """One row per finished (cell, split): AUROC/AUPRC with CIs, validation AUROC, timing."""
    rows = []
    for done in sorted(Path(out).glob("*/*/*/*/done.json")):
        cell, run = json.loads(done.read_text()), done.parent
        val = _val_auroc(run)
        for split in splits:
            metrics_file = run / split / "metrics.json"
            if not metrics_file.is_file():
                continue
            m = json.loads(metrics_file.read_text())["study"]
            rows.append(cell | {
                "split": split, "run": str(run.relative_to(out)), "val_auroc": val,
                "auroc": m["auroc"]["value"], "ci_low": m["auroc"]["ci_low"],
                "ci_high": m["auroc"]["ci_high"], "auprc": m["auprc"]["value"],
                "auprc_ci_low": m["auprc"]["ci_low"], "auprc_ci_high": m["auprc"]["ci_high"],
                "balanced_accuracy": m["balanced_accuracy"]["value"], "n_test_studies": m["n"]})
    return pd.DataFrame(rows)


def _scores_by_draw(out: Path, cells: pd.DataFrame, split: str) -> tuple[np.ndarray, dict]:
    """Test labels (S,) and {draw: study scores (S,)}, checking every draw scored the same
    studies."""
    y, ids, scores = None, None, {}
    for _, cell in cells.iterrows():
        table = _study_scores(out / cell["run"] / split / "study_predictions.csv")
        if ids is None:
            ids, y = table["study_id"].to_numpy(), table["y_true"].to_numpy(int)
        elif not np.array_equal(ids, table["study_id"].to_numpy()):
            raise ValueError(f"{out / cell['run']}: scored other {split} studies than its peers; "
                             "re-run evaluate on the same cache")
        scores[int(cell["draw"])] = table["y_score"].to_numpy(float)
    return y, scores


def _compare(y, a: dict, b: dict) -> dict:
    draws = sorted(set(a) & set(b))
    if not draws:
        return {"note": "no common label draws"}
    try:
        r = pooled_delta(y, np.array([a[d] for d in draws]), np.array([b[d] for d in draws]))
    except ValueError as err:  # e.g. fewer than 2 test studies of a class
        return {"note": str(err)}
    return {"delta_mean": r["delta_mean"], "delta_ci_low": r["ci_low"],
            "delta_ci_high": r["ci_high"], "draws_won": r["draws_won"],
            "p_pooled": r["p_pooled"], "n_compared_draws": len(draws), "note": ""}


def pooled_table(results: pd.DataFrame, out: Path, *, reference: str,
                 readouts: list[str]) -> pd.DataFrame:
    """The pooled verdict rows (see the module docstring); empty when nothing finished."""
    if results.empty:
        return pd.DataFrame()
    results = results[results["readout"].isin(readouts)]
    rows = []
    for (task, split, fraction), block in results.groupby(["task", "split", "fraction"],
                                                           sort=True):
        stats, scores = {}, {}
        for (init, readout), cells in block.groupby(["init", "readout"], sort=False):
            y, scores[init, readout] = _scores_by_draw(Path(out), cells, split)
            stats[init, readout] = {
                "task": task, "split": split, "fraction": fraction,
                "n_labeled_studies": int(cells["n_train_studies"].iloc[0]), "init": init,
                "readout": readout, "chosen": readout, "n_draws": len(cells),
                "auroc_mean": cells["auroc"].mean(), "auroc_sd": cells["auroc"].std(ddof=1),
                "val_auroc_mean": cells["val_auroc"].mean(), "n_test_studies": len(y)}
        best = {}
        for init in dict.fromkeys(i for i, _ in stats):
            options = [r for r in readouts if (init, r) in stats]
            best[init] = max(options, key=lambda r: (np.nan_to_num(
                stats[init, r]["val_auroc_mean"], nan=-1.0), -options.index(r)))
        for (init, readout), row in stats.items():
            if init != reference and (reference, readout) in scores:
                row |= {"versus": f"{reference}/{readout}"} | _compare(
                    y, scores[init, readout], scores[reference, readout])
            rows.append(row)
        for init, readout in best.items():
            row = stats[init, readout] | {"readout": "best", "chosen": readout}
            if init != reference and reference in best:
                ref = best[reference]
                row |= {"versus": f"{reference}/best ({ref})"} | _compare(
                    y, scores[init, readout], scores[reference, ref])
            rows.append(row)
    columns = ["task", "split", "fraction", "n_labeled_studies", "init", "readout", "chosen",
               "n_draws", "auroc_mean", "auroc_sd", "val_auroc_mean", "versus", "delta_mean",
               "delta_ci_low", "delta_ci_high", "draws_won", "p_pooled", "n_compared_draws",
               "n_test_studies", "note"]
    return pd.DataFrame(rows).reindex(columns=columns)
