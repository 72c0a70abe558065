"""What ``echoclr evaluate`` does for a multi-class run (a categorical task, e.g. the echo view).

The labels belong to videos, so the unit is the video, each with the clip-averaged softmax
probabilities; intervals resample studies (a study's videos together). Writes into the run folder
(or --out): predictions.csv (one row per labeled video: study_id, path, y_true, y_pred,
p_<class>; stamped with the model's fingerprint), metrics.json (per-class and macro one-vs-rest
AUROC with 95 % CIs, accuracy, the confusion matrix of the most probable class) and
confusion.png. There is no threshold to choose on validation: the call is the most probable
class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.class_metrics import evaluate_classes
from echoclr.data.cache import VideoCache
from echoclr.data.categorical import CLASS_COLUMN, encode, label_column
from echoclr.data.selection import check_split, check_task, check_view
from echoclr.errors import UserError
from echoclr.inference import class_probabilities, predict_video_classes
from echoclr.options import view_of
from echoclr.runs import model_stamp, write_derived
from echoclr.valid_json import write_json
from echoclr.weights import classifier_path


def labeled_videos(cache: VideoCache, meta: dict, split: str) -> pd.DataFrame:
    """The labeled videos of ``split`` with their class index in the model's class order.

    Raises:
        UserError: no such split, or fewer than two of the model's classes labeled in it.
    """
    check_task(cache, meta["task"])
    view = view_of(meta["view"])
    check_view(cache, view)
    check_split(cache, split)
    rows = encode(cache.rows(split, view), meta["task"], tuple(meta["classes"]))
    rows = rows[rows[CLASS_COLUMN] >= 0].reset_index(drop=True)
    if rows[CLASS_COLUMN].nunique() < 2:
        raise UserError(f"{cache.root / 'manifest.csv'}: the {split} split labels "
                        f"{rows[CLASS_COLUMN].nunique()} of the model's classes "
                        f"({', '.join(meta['classes'])}) in column "
                        f"{label_column(rows, meta['task'])!r}; AUROC needs two or more: label "
                        f"{split} videos of each class")
    return rows


def evaluate_class_run(cfg, model, meta: dict, cache: VideoCache, device) -> dict:
    """Predict the split's labeled videos, compute the metrics, write the outputs."""
    classes = tuple(meta["classes"])
    rows = labeled_videos(cache, meta, cfg.split)
    videos = predict_video_classes(model, cache, rows, classes=classes,
                                   clip_len=meta["clip_len"], period=meta["period"],
                                   clips=cfg.clips, batch_size=cfg.batch_size, device=device,
                                   precision=cfg.precision)
    dest = Path(cfg.out) if cfg.out else Path(cfg.run)
    dest.mkdir(parents=True, exist_ok=True)
    stamp = model_stamp(classifier_path(cfg.run), dest) | {"split": cfg.split}
    shown = videos.assign(y_true=np.asarray(classes, dtype=object)[videos["y_true"]])
    write_derived(dest / "predictions.csv", shown.to_csv(index=False), stamp)
    found = evaluate_classes(videos["y_true"].to_numpy(), class_probabilities(videos, classes),
                             classes, clusters=videos["study_id"].to_numpy(str),
                             n_resamples=cfg.n_resamples, seed=cfg.seed)
    result = {"split": cfg.split, "task": meta["task"], "init": meta["init"],
              "readout": meta["readout"], "clips": cfg.clips, "classes": list(classes),
              "level": "video", "model_sha256": stamp["model_sha256"],
              "call": "the most probable class",
              "ci": "95 % percentile bootstrap (2.5/97.5) over studies",
              "warnings": found.pop("warnings"), "video": found}
    write_json(dest / "metrics.json", result)
    if cfg.plots:
        from echoclr.plots import matrix_figure, save_figure  # matplotlib only here

        macro = found["macro_auroc"]["value"]
        save_figure(matrix_figure(found["confusion"], classes,
                                  title=f"{meta['task']} — {cfg.split}: {found['n']} videos, "
                                        f"macro AUROC {macro:.3f}"), dest / "confusion.png")
    return result
