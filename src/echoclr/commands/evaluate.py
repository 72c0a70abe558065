"""``echoclr evaluate``: study-level metrics with 95 % CIs for a fine-tuned run (a multi-class
run: :mod:`echoclr.class_evaluation`).

Writes predictions.csv (per video), study_predictions.csv (per study), each with a sidecar
holding the model's fingerprint, metrics.json and ROC/PR PNGs into the run folder (or --out).
The decision threshold is chosen on validation (Youden's J).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr import metrics, significance
from echoclr.class_evaluation import evaluate_class_run
from echoclr.data.cache import VideoCache
from echoclr.data.selection import check_both_classes, check_split, check_task, check_view
from echoclr.inference import predict_videos
from echoclr.options import device_opt, opt, precision_opt, view_of
from echoclr.runs import (
    STUDY_PREDICTIONS,
    VAL_STUDIES,
    model_stamp,
    pick_device,
    read_derived,
    write_derived,
)
from echoclr.valid_json import write_json
from echoclr.weights import classifier_path, file_sha256, load_classifier


@dataclass(frozen=True)
class EvaluateConfig:
    run: str = opt("", "Fine-tuning run folder (holding model.pt and model.json).")
    split: str = opt("test", "Split to evaluate: test, ext_test or val.")
    clips: int = opt(4, "Evenly spaced clips per video (paper: 4).")
    n_resamples: int = opt(1000, "Bootstrap resamples over studies.")
    seed: int = opt(0, "Seed of the bootstrap.")
    cache: str | None = opt(None, "Cache to read; None: the one the run was trained on.")
    out: str | None = opt(None, "Folder for the outputs; None: the run folder.")
    batch_size: int = opt(32, "Videos per forward pass.")
    plots: bool = opt(True, "Draw roc.png, pr.png, calibration.png and confusion.png.")
    precision: str = precision_opt()
    device: str = device_opt()


# What needs both classes in each split evaluate reads (named when one lacks a class).
USES = {"val": "the decision threshold (Youden's J on the validation studies)",
        "test": "AUROC", "ext_test": "AUROC"}


def labeled_rows(cache: VideoCache, meta: dict, split: str) -> pd.DataFrame:
    """The videos of ``split`` labeled for the model's task, in its view; checked to hold both
    classes (a UserError before any forward pass, naming the split and the missing class)."""
    view = view_of(meta["view"])  # models saved before views were normalised say "None"
    check_task(cache, meta["task"])
    check_view(cache, view)
    check_split(cache, split)
    rows = cache.rows(split, view)
    rows = rows[rows[meta["task"]].notna()].reset_index(drop=True)
    check_both_classes(rows, task=meta["task"], split=split, source=cache.root / "manifest.csv",
                       use=USES.get(split, "AUROC"))
    return rows


def _predict(model, meta, cache, rows, cfg, device) -> pd.DataFrame:
    return predict_videos(model, cache, rows, label=meta["task"], clip_len=meta["clip_len"],
                          period=meta["period"], clips=cfg.clips, batch_size=cfg.batch_size,
                          device=device, precision=cfg.precision)


def val_studies_key(run: Path, clips: int, cache: VideoCache) -> dict:
    """What validation study predictions belong to: this model, these clips, this cache."""
    return {"model_sha256": file_sha256(classifier_path(run)), "clips": clips,
            "cache": str(cache.root.resolve())}


def _val_studies(run: Path, model, meta, cache, rows, cfg, device) -> pd.DataFrame:
    """Validation study predictions, the threshold's source: kept in the run folder and reused
    only while they belong to its current model (its fingerprint) and these clips and cache."""
    path, key = run / VAL_STUDIES, val_studies_key(run, cfg.clips, cache)
    text = read_derived(path, key)
    if text is not None:
        return pd.read_csv(io.StringIO(text), dtype={"study_id": str})
    studies = metrics.aggregate_by_study(_predict(model, meta, cache, rows, cfg, device))
    write_derived(path, studies.to_csv(index=False), key)
    return studies


def evaluate_run(cfg: EvaluateConfig) -> dict:
    """Predict one split, aggregate by study, compute metrics with study-bootstrap CIs."""
    run = Path(cfg.run)
    model, meta = load_classifier(run)
    device = pick_device(cfg.device)
    model = model.to(device)
    cache = VideoCache(cfg.cache or meta["cache"])
    if meta.get("classes"):  # a multi-class task: video labels, no threshold
        return evaluate_class_run(cfg, model, meta, cache, device)
    val_rows, rows = labeled_rows(cache, meta, "val"), labeled_rows(cache, meta, cfg.split)
    val_study = _val_studies(run, model, meta, cache, val_rows, cfg, device)
    videos = _predict(model, meta, cache, rows, cfg, device)
    return write_evaluation(cfg, meta, val_study, videos)


def write_evaluation(cfg: EvaluateConfig, meta: dict, val_study: pd.DataFrame,
                     videos: pd.DataFrame) -> dict:
    """From validation study predictions (the threshold) and one split's video predictions:
    predictions.csv, study_predictions.csv (both stamped with the model's fingerprint),
    metrics.json (and the plots); returns the metrics.

    ``videos``: one row per video with ``study_id``, ``path``, ``y_true``, ``y_score``.
    """
    dest = Path(cfg.out) if cfg.out else Path(cfg.run)
    dest.mkdir(parents=True, exist_ok=True)
    threshold, rule = _threshold(val_study)
    studies = metrics.aggregate_by_study(videos)
    stamp = model_stamp(classifier_path(cfg.run), dest) | {"split": cfg.split}
    write_derived(dest / "predictions.csv", videos.to_csv(index=False), stamp)
    write_derived(dest / STUDY_PREDICTIONS, studies.to_csv(index=False), stamp)
    kw = dict(threshold=threshold, n_resamples=cfg.n_resamples, seed=cfg.seed)
    y, s = studies["y_true"].to_numpy(), studies["y_score"].to_numpy()
    study = significance.evaluate_scores(y, s, **kw)
    video = significance.evaluate_scores(videos["y_true"].to_numpy(),
                                         videos["y_score"].to_numpy(),
                                         clusters=videos["study_id"].to_numpy(), **kw)
    called = s >= threshold
    result = {
        "split": cfg.split, "task": meta["task"], "init": meta["init"],
        "readout": meta["readout"], "clips": cfg.clips, "model_sha256": stamp["model_sha256"],
        "threshold": threshold, "threshold_rule": rule,
        "ci": "95 % percentile bootstrap (2.5/97.5) over studies",
        "warnings": list(dict.fromkeys(study["warnings"] + video["warnings"])),
        "confusion": {"threshold": threshold, "level": "study",
                      "tn": int(np.sum((y == 0) & ~called)), "fp": int(np.sum((y == 0) & called)),
                      "fn": int(np.sum((y == 1) & ~called)), "tp": int(np.sum((y == 1) & called))},
        "study": study, "video": video,
    }
    write_json(dest / "metrics.json", result)
    if cfg.plots:
        _plot(dest, cfg, meta, y, s, result)
    return result


def _threshold(val_study: pd.DataFrame) -> tuple[float, str]:
    """The decision threshold and its rule: Youden's J on the validation studies."""
    if val_study["y_true"].nunique() == 2:
        return metrics.youden_threshold(val_study["y_true"].to_numpy(),
                                        val_study["y_score"].to_numpy()), \
            "Youden J on validation studies"
    return 0.5, "0.5 (validation studies hold one class)"  # no threshold to place


def run_label(meta: dict) -> str:
    """A run's name in legends: init (a pretraining run's folder name) / readout."""
    init = meta["init"]
    name = init if init in ("random", "kinetics") else Path(init).parent.name or init
    return f"{name}/{meta['readout']}"


def _plot(dest: Path, cfg: EvaluateConfig, meta: dict, y, s, result: dict) -> None:
    """roc.png, pr.png (legends: the run, n and the CI), calibration.png, confusion.png."""
    from echoclr import plots  # matplotlib only here

    name, study = run_label(meta), result["study"]
    shown = name + ("" if study["auroc"]["ci_reliable"] else " (CI unreliable)")
    title = f"{meta['task']} — {cfg.split}"
    for metric, plot, png in (("auroc", plots.plot_roc, "roc.png"),
                              ("auprc", plots.plot_pr, "pr.png")):
        plot({shown: (y, s)}, dest / png, title,
             cis={shown: (study[metric]["ci_low"], study[metric]["ci_high"])})
    plots.save_figure(plots.calibration_figure(y, s, title=f"{title}: reliability, {name}"),
                      dest / "calibration.png")
    plots.save_figure(plots.confusion_figure(y, s, threshold=result["threshold"],
                                             title=f"{title}, {name}"), dest / "confusion.png")
