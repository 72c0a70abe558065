"""``echoclr embed``: encoder features ``h`` per video and per study, and a 2-D PCA plot.

A video's ``h`` is the mean over ``clips`` evenly spaced clips (the test-time protocol); a
study's is the mean of its videos' (:func:`echoclr.metrics.aggregate_by_study`). Works with a
fine-tuned model or a pretraining encoder.pt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.atomic import atomic_write
from echoclr.data.cache import VideoCache
from echoclr.data.preprocess import check_compatible, preprocessing_of
from echoclr.data.selection import check_view
from echoclr.errors import UserError
from echoclr.inference import clip_average_videos
from echoclr.metrics import aggregate_by_study
from echoclr.options import ViewSetting, cache_opt, device_opt, opt, precision_opt, view_opt
from echoclr.runs import pick_device
from echoclr.valid_json import write_json
from echoclr.weights import load_any_encoder


@dataclass(frozen=True)
class EmbedConfig(ViewSetting):
    model: str = opt("", "Fine-tuning run folder or its model.pt, or a pretraining encoder.pt "
                         "or its run folder.")
    cache: str = cache_opt()
    out: str = opt("embeddings.npz", "Output file, .npz or .parquet; the PCA plot (.png) and a "
                                     ".json go beside it.")
    split: str | None = opt(None, "Embed only this split; None: every video of the cache.")
    view: str | None = view_opt("all", "Embed only the videos of this echo view (in any case); "
                                       "all: every view.")
    label: str | None = opt(None, "Manifest column that colours the plot; None: the model's "
                                  "task.")
    clips: int = opt(4, "Evenly spaced clips per video, whose features are averaged.")
    batch_size: int = opt(8, "Videos per forward pass.")
    precision: str = precision_opt()
    device: str = device_opt()


def _label_column(cfg: EmbedConfig, meta: dict, manifest: pd.DataFrame) -> str | None:
    if cfg.label is not None:
        if cfg.label not in manifest.columns:
            raise UserError(f"{cfg.cache}: manifest has no column {cfg.label!r} to colour by "
                             f"(columns: {list(manifest.columns)})")
        return cfg.label
    task = meta.get("task")
    return task if task in manifest.columns else None


def embed(cfg: EmbedConfig) -> Path:
    """Write per-video and per-study features and a PCA plot; returns the features file.

    ``.npz`` holds ``h`` (N, F) with ``study_id``, ``path``, ``split``, ``label`` (N,), and the
    study table ``studies`` (S,), ``study_h`` (S, F), ``study_label`` (S,). ``.parquet`` holds
    one table: ``level`` (video | study), ``study_id``, ``path``, ``split``, ``label``,
    ``h_0`` … ``h_{F-1}``. Labels are floats, NaN when missing.
    """
    encoder, meta = load_any_encoder(cfg.model)
    device = pick_device(cfg.device)
    encoder = encoder.to(device)
    cache = VideoCache(cfg.cache)
    check_compatible(preprocessing_of(meta, cfg.model), cache.preprocessing,
                     expected_from=cfg.model, found_from=cache.config_path,
                     fix="embed a cache ingested with the model's settings")
    check_view(cache, cfg.view)
    rows = cache.rows(cfg.split, cfg.view)
    if rows.empty:
        raise UserError(f"{cache.root / 'manifest.csv'}: no videos in split {cfg.split!r}"
                        f"{f' of view {cfg.view}' if cfg.view else ''}")
    label = _label_column(cfg, meta, rows)
    h = clip_average_videos(encoder, cache, rows, clip_len=meta["clip_len"],
                            period=meta["period"], clips=cfg.clips, batch_size=cfg.batch_size,
                            device=device, precision=cfg.precision)  # (N, F)
    videos = pd.DataFrame({
        "study_id": rows["study_id"].astype(str), "path": rows["path"].astype(str),
        "split": rows["split"].fillna("").astype(str) if "split" in rows else "",
        "label": pd.to_numeric(rows[label], errors="coerce") if label else np.nan})
    dims = list(range(h.shape[1]))
    studies = aggregate_by_study(pd.concat([videos, pd.DataFrame(h, columns=dims)], axis=1),
                                 score=dims, label="label").set_index("study_id")
    study_h, study_label = studies[dims], studies["label"].astype(float)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        _write_parquet(out, videos, h, study_h, study_label)
    else:
        _write_npz(out, videos, h, study_h, study_label)
    explained = plot_projection(h, videos["label"].to_numpy(), study_h.to_numpy(),
                                study_label.to_numpy(), out.with_suffix(".png"),
                                title=f"{meta['encoder']} features"
                                      f"{f' — {cfg.split}' if cfg.split else ''}",
                                label=label)
    info = {"model": str(cfg.model), "cache": str(cfg.cache), "split": cfg.split,
            "view": cfg.view,
            "encoder": meta["encoder"], "feature_dim": int(h.shape[1]),
            "clip_len": meta["clip_len"], "period": meta["period"], "clips": cfg.clips,
            "label": label, "n_videos": len(videos), "n_studies": len(study_h),
            "projection": "PCA (scikit-learn), fitted on videos",
            "explained_variance_ratio": explained}
    write_json(out.with_name(out.name + ".json"), info)
    return out


def _write_npz(out: Path, videos: pd.DataFrame, h, study_h, study_label) -> None:
    arrays = dict(h=h, study_id=videos["study_id"].to_numpy(str), path=videos["path"].to_numpy(str),
                  split=videos["split"].to_numpy(str), label=videos["label"].to_numpy(float),
                  studies=study_h.index.to_numpy(str), study_h=study_h.to_numpy(np.float32),
                  study_label=study_label.to_numpy(float))
    atomic_write(out, lambda f: np.savez(f, **arrays))


def _write_parquet(out: Path, videos: pd.DataFrame, h, study_h, study_label) -> None:
    names = [f"h_{i}" for i in range(h.shape[1])]
    video_table = pd.concat([videos.assign(level="video"), pd.DataFrame(h, columns=names)],
                            axis=1)
    study_table = pd.DataFrame(study_h.to_numpy(np.float32), columns=names).assign(
        level="study", study_id=study_h.index.to_numpy(str), path="", split="",
        label=study_label.to_numpy(float))
    table = pd.concat([video_table, study_table], ignore_index=True)
    table = table[["level", "study_id", "path", "split", "label", *names]]
    atomic_write(out, lambda f: table.to_parquet(f, index=False))


def plot_projection(h: np.ndarray, labels: np.ndarray, study_h: np.ndarray,
                    study_labels: np.ndarray, out_png: str | Path, *, title: str,
                    label: str | None) -> list[float]:
    """PCA of video features (dots) with study means (large circles), coloured by label.

    Returns:
        The explained variance ratio of the two axes.
    """
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    n_components = min(2, *h.shape)
    pca = PCA(n_components=n_components).fit(h)
    pad = [(0, 0), (0, 2 - n_components)]
    xy, study_xy = np.pad(pca.transform(h), pad), np.pad(pca.transform(study_h), pad)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    groups = [(labels == 0, study_labels == 0, "tab:blue", f"{label} = 0"),
              (labels == 1, study_labels == 1, "tab:red", f"{label} = 1"),
              (np.isnan(labels), np.isnan(study_labels), "tab:gray",
               "unlabeled" if label else "videos")]
    for videos, studies, color, name in groups:
        if videos.any():
            ax.scatter(*xy[videos].T, s=8, alpha=0.5, color=color, label=name)
        if studies.any():
            ax.scatter(*study_xy[studies].T, s=40, color=color, edgecolors="black",
                       linewidths=0.6)
    ratio = [float(r) for r in pca.explained_variance_ratio_] + [0.0] * (2 - n_components)
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f} %)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f} %)")
    ax.set_title(f"{title}\n(dots: videos, circles: study means)")
    ax.legend(loc="best", fontsize=8)
    fig.savefig(out_png, dpi=150, bbox_inches="tight")
    return ratio
