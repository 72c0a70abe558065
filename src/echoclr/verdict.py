"""An experiment's finished cells → results.csv rows and the pooled verdict (pooled.csv).

One pooled row per (task, split, fraction, init, readout): the mean and SD of test AUROC over
the label draws and, against the reference init with the same readout, the pooled difference of
:func:`echoclr.pooled.pooled_delta` over the draws both have. Each init's *best* readout at a
fraction is chosen on the validation studies only, by :data:`SELECTION_RULE`: the paper's
fine-tuning wherever it ran, replaced by another readout only on evidence (its pooled validation
gain over the primary has p < 0.05), because with ~80 validation studies the readout with the
higher mean validation AUROC is often the worse one on test. A ``best`` row compares the best
readouts of an init and of the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.metrics import auroc
from echoclr.pooled import pooled_delta
from echoclr.runs import VAL_STUDIES

PREFERENCE = ("finetune", "lpft", "probe")  # the paper's readout first, then ours
SELECTION_ALPHA = 0.05
SELECTION_RULE = ("each init's best readout at a fraction is fine-tuning where it ran (the "
                  "paper's protocol; else LP-FT, else the probe); another readout replaces it "
                  "only when it beats that one on the validation studies, pooled over their "
                  f"common label draws, with p < {SELECTION_ALPHA} (the largest such gain wins); "
                  "test results play no part")


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


def _scores_by_draw(out: Path, cells: pd.DataFrame, name: str,
                    ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Study ids (S,), labels (S,) and {draw: study scores (S,)} of the cells' ``name`` file
    (a split's study_predictions.csv, or the validation studies), checking every draw scored
    the same studies (those of ``ids`` when given)."""
    y, scores = None, {}
    for _, cell in cells.iterrows():
        table = _study_scores(out / cell["run"] / name)
        if ids is None:
            ids = table["study_id"].to_numpy()
        if y is None:
            y = table["y_true"].to_numpy(int)
        if not np.array_equal(ids, table["study_id"].to_numpy()):
            raise ValueError(f"{out / cell['run'] / name}: scored other studies than its peers; "
                             "re-run evaluate on the same cache")
        scores[int(cell["draw"])] = table["y_score"].to_numpy(float)
    return ids, y, scores


def choose_readout(y_val: np.ndarray, val_scores: dict[str, dict[int, np.ndarray]], *,
                   alpha: float = SELECTION_ALPHA) -> tuple[str, float]:
    """One init's readout at one fraction by :data:`SELECTION_RULE`.

    Args:
        y_val: (S,) validation-study labels.
        val_scores: {readout: {draw: (S,) validation-study scores}}, the readouts that ran.
    Returns:
        (readout, p): p of the chosen readout's pooled validation gain over the primary, NaN
        when the primary is kept.
    """
    primary = next(r for r in PREFERENCE if r in val_scores)
    chosen, gain, p = primary, 0.0, float("nan")
    for readout in PREFERENCE:
        if readout == primary or readout not in val_scores:
            continue
        c = _compare(y_val, val_scores[readout], val_scores[primary])
        if c.get("p_pooled", 1.0) < alpha and c["delta_mean"] > gain:
            chosen, gain, p = readout, c["delta_mean"], c["p_pooled"]
    return chosen, p


def _val_scores(out: Path, block: pd.DataFrame, init: str, options: list[str]):
    """(validation labels, {readout: {draw: scores}}) of one init's cells; None when a cell has
    no validation studies of both classes (then the primary readout is kept)."""
    ids, y, scores = None, None, {}
    for readout in options:
        cells = block[(block["init"] == init) & (block["readout"] == readout)]
        if not all((out / run / VAL_STUDIES).is_file() for run in cells["run"]):
            return None
        ids, y, scores[readout] = _scores_by_draw(out, cells, VAL_STUDIES, ids)
    return (y, scores) if y is not None and len(np.unique(y)) == 2 else None


ONE_DRAW = ("one label draw (e.g. all labels): p covers the test studies only, not the "
            "run-to-run noise of training")


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
            "p_pooled": r["p_pooled"], "n_compared_draws": len(draws),
            "note": ONE_DRAW if len(draws) == 1 else ""}


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
            _, y, scores[init, readout] = _scores_by_draw(
                Path(out), cells, f"{split}/study_predictions.csv")
            stats[init, readout] = {
                "task": task, "split": split, "fraction": fraction,
                "n_labeled_studies": int(cells["n_train_studies"].iloc[0]), "init": init,
                "readout": readout, "chosen": readout, "n_draws": len(cells),
                "auroc_mean": cells["auroc"].mean(), "auroc_sd": cells["auroc"].std(ddof=1),
                "val_auroc_mean": cells["val_auroc"].mean(), "n_test_studies": len(y)}
        best, selection_p = {}, {}
        for init in dict.fromkeys(i for i, _ in stats):
            options = [r for r in PREFERENCE if (init, r) in stats]
            val = _val_scores(Path(out), block, init, options)
            best[init], selection_p[init] = (choose_readout(*val) if val is not None
                                             else (options[0], float("nan")))
        for (init, readout), row in stats.items():
            if init != reference and (reference, readout) in scores:
                row |= {"versus": f"{reference}/{readout}"} | _compare(
                    y, scores[init, readout], scores[reference, readout])
            rows.append(row)
        for init, readout in best.items():
            row = stats[init, readout] | {"readout": "best", "chosen": readout,
                                          "selection_p": selection_p[init]}
            if init != reference and reference in best:
                ref = best[reference]
                row |= {"versus": f"{reference}/best ({ref})"} | _compare(
                    y, scores[init, readout], scores[reference, ref])
            rows.append(row)
    columns = ["task", "split", "fraction", "n_labeled_studies", "init", "readout", "chosen",
               "n_draws", "auroc_mean", "auroc_sd", "val_auroc_mean", "selection_p", "versus",
               "delta_mean", "delta_ci_low", "delta_ci_high", "draws_won", "p_pooled",
               "n_compared_draws", "n_test_studies", "note"]
    return pd.DataFrame(rows).reindex(columns=columns)
