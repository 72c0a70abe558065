"""``echoclr views``: an echo view classifier from a few labeled videos, and the cache's ``view``
column filled from it.

The label-efficient way to select PLAX videos from an archive of every view: ingest with
``--view all``, pretrain on everything, label a handful of videos per view in the manifest's
``view`` column (blank for the rest), then::

    echoclr views CACHE --init PRETRAIN/encoder.pt --out runs/views --write-manifest
    echoclr finetune CACHE --init PRETRAIN/encoder.pt --view PLAX ...

A multinomial probe (:mod:`echoclr.view_model`) is fitted on the frozen features of the labeled
training videos (``--per-view`` caps them per view); labeled validation and test videos measure
it (per-view and macro one-vs-rest AUROC, accuracy, confusion matrix). The run folder holds::

    RUN/config.json            the resolved settings
    RUN/view_model.pt          weight (V, F) and bias (V,) tensors (weights_only loading)
    RUN/view_model.json        its views, C, cross-validation AUROC, the encoder's fingerprint
    RUN/view_predictions.csv   every video: path, study_id, split, view_label, view_pred,
                               view_confidence, p_<VIEW> per view, fitted (used to fit)
    RUN/metrics.json           the held-out labeled videos' metrics
    RUN/confusion.png

``--write-manifest`` rewrites the cache's manifest: ``view`` holds each video's label where it
was used to fit and the model's view elsewhere (``unknown`` below ``--min-confidence``); the
column as it was is kept as ``view_given``, with ``view_confidence`` and ``view_from``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echoclr.data.cache import VideoCache, write_manifest
from echoclr.data.categorical import class_labels, label_column
from echoclr.errors import UserError
from echoclr.features import clip_features, encoder_fingerprint
from echoclr.inits import check_init, init_encoder
from echoclr.options import cache_opt, device_opt, opt, precision_opt
from echoclr.plots import matrix_figure, save_figure
from echoclr.runs import pick_device, seed_everything, write_config
from echoclr.valid_json import write_json
from echoclr.view_model import ViewModel, fit_view_model, view_metrics
from echoclr.weights import atomic_torch_save

UNKNOWN = "unknown"


@dataclass(frozen=True)
class ViewsConfig:
    cache: str = cache_opt()
    out: str = opt("runs/views", "Run folder: view_model.pt, view_predictions.csv, metrics.json, "
                                 "confusion.png.")
    init: str = opt("random", "Encoder whose frozen features are classified: the path of a "
                              "pretraining encoder.pt, kinetics, or random.")
    encoder: str = opt("r3d_18", "Architecture of a random or kinetics init.")
    width: int = opt(16, "Base width of r3d_tiny (features: 8 x width).")
    weights: str | None = opt(None, "Kinetics-400 state-dict file; None reads torch's cache.")
    label_column: str = opt("view", "Manifest column of the view labels; blank cells are "
                                    "unlabeled videos.")
    per_view: int | None = opt(None, "Fit on at most this many labeled training videos per "
                                     "view (drawn with --seed); None: every labeled one.")
    seed: int = opt(0, "Seed of the --per-view draw, the folds and a random init.")
    folds: int = opt(5, "Cross-validation folds for C (fewer when a view has fewer studies).")
    clip_len: int = opt(4, "Frames per clip.")
    period: int = opt(2, "Stride between the frames of a clip.")
    clips: int = opt(2, "Evenly spaced clips per video whose features are averaged.")
    features: str | None = opt(None, "Folder that keeps the encoder's features of the cache; "
                                     "None: RUN/features.")
    write_manifest: bool = opt(False, "Write the predicted views into the cache's manifest "
                                      "(the old column is kept as view_given).")
    min_confidence: float = opt(0.0, "With --write-manifest: a video whose top view "
                                     "probability is below this gets view 'unknown'.")
    batch_size: int = opt(32, "Videos per forward pass.")
    precision: str = precision_opt()
    device: str = device_opt()


def labeled_views(rows: pd.DataFrame, column: str, cache: VideoCache) -> pd.Series:
    """Each row's view label, stripped and upper-cased ('' when blank or unknown). After a
    ``--write-manifest``, ``view`` holds predictions: the labels are read from ``view_given``
    (:func:`echoclr.data.categorical.class_labels`)."""
    if label_column(rows, column) not in rows.columns:
        raise UserError(f"{cache.root / 'manifest.csv'}: no column {column!r} of view labels "
                        f"(columns: {', '.join(map(str, rows.columns))}); label a few videos per "
                        "view there, or name the column with --label-column")
    return class_labels(rows, column)


def fitting_rows(labels: pd.Series, rows: pd.DataFrame, cfg: ViewsConfig,
                 cache: VideoCache) -> np.ndarray:
    """Boolean (N,): the labeled training videos the model is fitted on (``per_view`` each)."""
    fit = (labels != "").to_numpy() & (rows["split"] == "train").to_numpy()
    counts = labels[fit].value_counts()
    if len(counts) < 2 or counts.min() < 2:
        raise UserError(f"{cache.root / 'manifest.csv'}: column {cfg.label_column!r} labels "
                        f"{dict(counts)} training videos; label at least 2 videos of each of two "
                        "or more views in the train split")
    if cfg.per_view is not None:
        rng = np.random.default_rng(cfg.seed)
        keep = np.zeros(len(rows), bool)
        for view in sorted(counts.index):
            index = np.flatnonzero(fit & (labels == view).to_numpy())
            keep[rng.permutation(index)[:cfg.per_view]] = True
        fit = keep
    return fit


def save_view_model(model: ViewModel, out: Path, info: dict) -> None:
    """``view_model.pt`` (plain tensors) and its ``view_model.json`` sidecar."""
    atomic_torch_save({"weight": torch.tensor(model.weight), "bias": torch.tensor(model.bias)},
                      out / "view_model.pt")
    write_json(out / "view_model.json", info | {
        "views": list(model.views), "c": model.c, "cv_macro_auroc": model.cv_macro_auroc,
        "cv_folds": model.cv_folds, "cv_grid": {f"{c:g}": v for c, v in model.cv_grid.items()}})


def views(cfg: ViewsConfig) -> Path:
    """Fit the view model, measure it on held-out labeled videos, predict every video of the
    cache (and, with ``write_manifest``, write the views into its manifest); returns RUN."""
    out = Path(cfg.out)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    cache = VideoCache(cfg.cache)
    rows = cache.rows()
    labels = labeled_views(rows, cfg.label_column, cache)
    fit = fitting_rows(labels, rows, cfg, cache)
    encoder, meta = init_encoder(cfg.init, arch=cfg.encoder, width=cfg.width,
                                 weights=cfg.weights)
    check_init(cfg.init, meta, cache)
    out.mkdir(parents=True, exist_ok=True)
    h = clip_features(encoder.to(device), cache, rows, clip_len=cfg.clip_len, period=cfg.period,
                      clips=cfg.clips, store=cfg.features or out / "features", device=device,
                      precision=cfg.precision, batch_size=cfg.batch_size).mean(axis=1)
    model = fit_view_model(h[fit], labels[fit].to_numpy(), rows["study_id"][fit].to_numpy(),
                           folds=cfg.folds, seed=cfg.seed)
    proba = model.proba(h)
    held = (labels != "").to_numpy() & rows["split"].isin(["val", "test"]).to_numpy() & ~fit
    held &= labels.isin(model.views).to_numpy()  # a view never fitted cannot be scored
    metrics = view_metrics(model.views, labels[held].to_numpy(), proba[held])
    metrics |= {"n_fit_videos": int(fit.sum()), "measured_on": "labeled val and test videos "
                "not used to fit", "cv_macro_auroc": model.cv_macro_auroc}
    predictions = rows[["path", "study_id", "split"]].copy()
    predictions["view_label"] = labels.to_numpy()
    predictions["view_pred"] = np.asarray(model.views)[proba.argmax(axis=1)]
    predictions["view_confidence"] = proba.max(axis=1)
    for k, view in enumerate(model.views):
        predictions[f"p_{view}"] = proba[:, k]
    predictions["fitted"] = fit
    write_config(cfg, out, {"encoder": meta["encoder"], "width": meta["width"]})
    save_view_model(model, out, {"encoder": meta["encoder"], "width": meta["width"],
                                 "init": cfg.init, "encoder_sha": encoder_fingerprint(encoder),
                                 "clip_len": cfg.clip_len, "period": cfg.period,
                                 "clips": cfg.clips})
    predictions.to_csv(out / "view_predictions.csv", index=False)
    write_json(out / "metrics.json", metrics)
    save_figure(matrix_figure(metrics["confusion"], model.views,
                              title=f"Views, {metrics['n_videos']} held-out videos"),
                out / "confusion.png")
    if cfg.write_manifest:
        write_views(cache, rows, predictions, cfg)
    return out


def write_views(cache: VideoCache, rows: pd.DataFrame, predictions: pd.DataFrame,
                cfg: ViewsConfig) -> None:
    """The cache's manifest with the model's views (labels where they were fitted)."""
    given = rows.get(cfg.label_column, pd.Series("", index=rows.index))
    confident = predictions["view_confidence"].to_numpy() >= cfg.min_confidence
    model_view = np.where(confident, predictions["view_pred"].to_numpy(), UNKNOWN)
    fitted = predictions["fitted"].to_numpy()
    updated = rows.copy()
    if "view_given" not in updated:  # a second run keeps the first run's original column
        updated["view_given"] = given.to_numpy()
    updated["view"] = np.where(fitted, predictions["view_label"].to_numpy(), model_view)
    updated["view_confidence"] = np.where(fitted, 1.0, predictions["view_confidence"])
    updated["view_from"] = np.where(fitted, "label", "model")
    write_manifest(cache.root, updated)
