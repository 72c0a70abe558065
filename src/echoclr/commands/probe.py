"""``echoclr probe``: the probe readout — a logistic regression on a frozen encoder's features.

Every video's clip features are computed once per encoder and cache (:mod:`echoclr.features`);
the study features (clips → video → study means) of the labeled training studies of the drawn
fraction fit an L2 logistic regression whose C is chosen by cross-validation on those studies
alone (:func:`echoclr.probe.fit_probe`). The run folder has fine-tuning's schema — the encoder
with the probe as its head in ``model.pt`` — so ``evaluate``, ``compare``, ``predict``,
``embed`` and ``experiment`` use it unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from echoclr.data.cache import VideoCache
from echoclr.data.categorical import CLASS_COLUMN, readout_view, videos_per_class
from echoclr.data.selection import select_task_rows, studies_fingerprint
from echoclr.errors import UserError
from echoclr.features import clip_features
from echoclr.inits import check_init, init_encoder
from echoclr.models import Classifier
from echoclr.options import (
    LabeledReadoutSetting,
    device_opt,
    opt,
    precision_opt,
    view_opt,
)
from echoclr.probe import C_GRID, ProbeFit, fit_probe
from echoclr.runs import JsonlLog, clear_model_outputs, pick_device, seed_everything, write_config
from echoclr.view_model import ViewModel, fit_view_model
from echoclr.weights import load_classifier, save_classifier


@dataclass(frozen=True)
class ProbeConfig(LabeledReadoutSetting):
    out: str = opt("runs/probe", "Run folder: config.json, log.jsonl, model.pt, model.json.")
    seed: int = opt(0, "Seed of a random init's weights and of the cross-validation folds.")
    clip_len: int = opt(16, "Frames per clip.")
    period: int = opt(1, "Stride between the frames of a clip.")
    clips: int = opt(4, "Evenly spaced clips per video whose features are averaged (and "
                        "evaluate's clips).")
    folds: int = opt(5, "Cross-validation folds for C (fewer when a class has fewer studies).")
    features: str | None = opt(None, "Folder that keeps each encoder's features of the cache "
                                     "for reuse; None: RUN/features.")
    view: str | None = view_opt("PLAX")
    batch_size: int = opt(32, "Videos per forward pass.")
    precision: str = precision_opt()
    device: str = device_opt()


def study_table(rows: pd.DataFrame, features: np.ndarray, task: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Videos → studies: mean feature (S, F), label (S,), patient (S,) per study, sorted."""
    frame = pd.DataFrame(features, index=rows["study_id"].to_numpy(str))
    study_x = frame.groupby(level=0, sort=True).mean()
    first = rows.assign(study_id=rows["study_id"].astype(str)).groupby("study_id", sort=True)
    y = first[task].first().loc[study_x.index].to_numpy(int)
    patients = first["patient_id"].first().loc[study_x.index].to_numpy(str)
    return study_x.to_numpy(np.float64), y, patients


def probe_classifier(encoder: torch.nn.Module, fit: ProbeFit | ViewModel) -> Classifier:
    """The encoder with the probe as its logit layer (no dropout: the probe had none): one
    logit for a binary probe (weight (F,)), one per class for a multinomial one (weight (K, F))."""
    weight = torch.tensor(fit.weight, dtype=torch.float32)
    model = Classifier(encoder, dropout=0.0, n_outputs=1 if weight.ndim == 1 else len(weight))
    model.set_head(weight, torch.tensor(fit.bias))
    return model


def probe_predictions(run: str | Path, cache: VideoCache, rows: pd.DataFrame, *, label: str,
                      clips: int, store: str | Path, device: torch.device = torch.device("cpu"),
                      precision: str = "auto") -> pd.DataFrame:
    """A probe run's video predictions from stored features, without a forward pass when the
    store holds them: what ``evaluate`` computes (mean clip probability), in float64.

    Returns:
        One row per video: study_id, path, y_true, y_score.
    """
    model, meta = load_classifier(run)
    h = clip_features(model.encoder, cache, rows, clip_len=meta["clip_len"],
                      period=meta["period"], clips=clips, store=store, device=device,
                      precision=precision)
    weight = model.head.weight.detach().double().numpy()[0]
    bias = float(model.head.bias.detach())
    out = rows[["study_id", "path"]].reset_index(drop=True)
    out["y_true"] = pd.to_numeric(rows[label], errors="coerce").to_numpy()
    out["y_score"] = expit(h.astype(np.float64) @ weight + bias).mean(axis=1)
    return out


def probe(cfg: ProbeConfig) -> Path:
    """Fit the probe on the drawn label fraction; returns the run folder."""
    out = Path(cfg.out)
    seed_everything(cfg.seed)  # a random init's weights
    device = pick_device(cfg.device)
    cache = VideoCache(cfg.cache)
    encoder, meta = init_encoder(cfg.init, arch=cfg.encoder, width=cfg.width,
                                 weights=cfg.weights)
    check_init(cfg.init, meta, cache)
    train, val, classes = select_task_rows(cache, task=cfg.task, fraction=cfg.fraction,
                                           fraction_seed=cfg.fraction_seed, view=cfg.view,
                                           check_val=False)
    clear_model_outputs(out)  # the inputs check out; a new model: the old one's outputs go
    out.mkdir(parents=True, exist_ok=True)
    h = clip_features(encoder.to(device), cache, train, clip_len=cfg.clip_len,
                      period=cfg.period, clips=cfg.clips,
                      store=cfg.features or out / "features", device=device,
                      precision=cfg.precision, batch_size=cfg.batch_size)
    bad = int((~np.isfinite(h).reshape(len(h), -1).all(axis=1)).sum())
    if bad:
        raise UserError(f"--init {cfg.init}: the features of {bad} of {len(h)} training videos "
                        "are not finite, so the encoder's weights hold inf/NaN (a diverged "
                        "pretraining): pretrain it again, with --precision fp32 if it was bf16")
    if classes is None:
        x, y, patients = study_table(train, h.mean(axis=1), cfg.task)
        fit = fit_probe(x, y, patients, folds=cfg.folds, seed=cfg.seed)
        model = probe_classifier(encoder.cpu(), fit)
        counts = {"n_train_studies": len(y), "n_train_pos": int(y.sum())}
        summary = {"c": fit.c, "cv_auroc": fit.cv_auroc, "cv_folds": fit.cv_folds,
                   "cv_grid": fit.cv_grid}
    else:  # a categorical task: one sample per video, folds grouped by study
        fit = fit_view_model(h.mean(axis=1), np.asarray(classes)[train[CLASS_COLUMN]],
                             train["study_id"].to_numpy(str), folds=cfg.folds, seed=cfg.seed)
        model = probe_classifier(encoder.cpu(), fit)
        counts = {"n_train_studies": int(train["study_id"].nunique()),
                  "n_train_per_class": videos_per_class(train, classes)}
        summary = {"c": fit.c, "cv_macro_auroc": fit.cv_macro_auroc, "cv_folds": fit.cv_folds,
                   "cv_grid": fit.cv_grid}
    write_config(cfg, out, {"encoder": meta["encoder"], "width": meta["width"],  # as resolved
                            **counts, "train_studies_sha256": studies_fingerprint(train),
                            "n_train_videos": len(train),
                            "n_val_studies": int(val["study_id"].nunique())})
    log = JsonlLog(out / "log.jsonl")
    log.path.unlink(missing_ok=True)
    log.write(**summary | {"cv_grid": {f"{c:g}": v for c, v in summary["cv_grid"].items()}})
    fitted_on = "study means of clip features" if classes is None else \
        "video means of clip features (one sample per labeled video)"
    info = {"encoder": meta["encoder"], "width": meta["width"], "task": cfg.task,
            "init": cfg.init, "readout": "probe",
            "view": readout_view(cfg.task, cfg.view),
            "clip_len": cfg.clip_len, "period": cfg.period, "dropout": 0.0,
            "eval_clips": cfg.clips, "preprocessing": cache.preprocessing.to_dict(),
            "cache": str(Path(cfg.cache).resolve()),
            "probe": {k: v for k, v in summary.items() if k != "cv_grid"}
            | {"c_grid": list(C_GRID), "fit_on": fitted_on},
            "probe_config": dataclasses.asdict(cfg)}
    if classes is not None:
        info |= {"classes": list(classes), "label_level": "video"}
    save_classifier(model, out, info)
    return out
