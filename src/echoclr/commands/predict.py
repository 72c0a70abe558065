"""``echoclr predict``: probabilities for new echo videos and studies from a fine-tuned model.

Each file is decoded and preprocessed exactly as ``ingest`` prepared the model's training cache,
then scored with the test-time protocol of Holste et al. 2024 (``k`` evenly spaced clips per
video, probabilities averaged → video; videos averaged → study).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from echoclr.atomic import atomic_write_text
from echoclr.data.cache import decode_and_preprocess
from echoclr.data.dicom_header import cine_skip_reason
from echoclr.data.manifest import (
    ManifestError,
    ManifestProblem,
    of_view,
    read_manifest,
    resolve_path,
)
from echoclr.data.preprocess import Preprocessing, preprocessing_of, replayable
from echoclr.data.transforms import evenly_spaced_clips
from echoclr.data.video import is_dicom
from echoclr.data.video_types import VideoReadError
from echoclr.errors import UserError
from echoclr.inference import predict_clips
from echoclr.metrics import aggregate_by_study
from echoclr.options import ViewSetting, device_opt, model_opt, opt, precision_opt, view_opt
from echoclr.runs import pick_device
from echoclr.weights import load_classifier, require_binary

VIDEO_SUFFIXES = (".avi", ".mp4")
COLUMNS = ("level", "study_id", "path", "probability", "status", "n_videos")


@dataclass(frozen=True)
class PredictConfig(ViewSetting):
    model: str = model_opt()
    inputs: tuple[str, ...] = opt((), "DICOM files or folders (searched recursively), AVI or "
                                      "MP4 files, or a manifest CSV.")
    out: str = opt("predictions.csv", "Output CSV: one row per video and one per study.")
    clips: int | None = opt(None, "Evenly spaced clips per video; None: the model's eval_clips.")
    view: str | None = view_opt("all", "Score only the manifest rows of this echo view (in any "
                                       "case); all: every row. Files given directly are scored.")
    salt: str = opt("", "The salt given to ingest, so that DICOM study hashes match the "
                        "training cache's.")
    precision: str = precision_opt()
    device: str = device_opt()


@dataclass(frozen=True)
class VideoInput:
    """One file to score; ``study_id`` and ``fps`` come from a manifest row when there is one."""

    path: Path
    study_id: str | None = None
    fps: float | None = None
    problem: str | None = None  # a manifest row that names no file


def collect_inputs(inputs: tuple[str, ...] | list[str], view: str | None = None
                   ) -> list[VideoInput]:
    """Files to score: folders walked recursively (DICOM by preamble or suffix, AVI, MP4; hidden
    files and folders skipped), manifests (``.csv``: ``path`` [, ``study_id``, ``fps``,
    ``view``]) expanded to their rows of ``view`` (any case; None: every row), other paths kept
    as given (a missing one is reported in its row)."""
    items: list[VideoInput] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = [VideoInput(f, problem=cine_skip_reason(f)) for f in sorted(path.rglob("*"))
                     if _is_video_file(f) and not
                     any(part.startswith(".") for part in f.relative_to(path).parts)]
            if not found:
                warnings.warn(f"predict: {path}: no DICOM, AVI or MP4 files in this folder",
                              stacklevel=2)
            items += found
        elif path.suffix.lower() == ".csv":
            items += _manifest_inputs(path, view)
        else:
            items.append(VideoInput(path))
    return items


def _is_video_file(path: Path) -> bool:
    if not path.is_file() or path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    try:
        return is_dicom(path)
    except OSError:  # unreadable: list it, so its row says why
        return True


def _manifest_inputs(path: Path, view: str | None) -> list[VideoInput]:
    df = read_manifest(path)
    if "path" not in df.columns:
        raise ManifestError(path, [ManifestProblem(None, "path", "required column missing")])
    if view is not None:
        if "view" not in df.columns:
            raise UserError(f"{path}: --view {view} given but the manifest has no view column; "
                            "pass --view all")
        df = df[of_view(df["view"], view)]
    fps = pd.to_numeric(df["fps"], errors="coerce") if "fps" in df.columns else None
    items = []
    for i, row in df.iterrows():
        study = row.get("study_id")
        study = str(study) if isinstance(study, str) and study else None
        rate = float(fps[i]) if fps is not None and fps[i] > 0 else None
        if not isinstance(row["path"], str) or not row["path"]:
            items.append(VideoInput(Path(f"{path}#row{i + 1}"), study, rate, "blank path"))
        else:
            items.append(VideoInput(resolve_path(row["path"], path.parent), study, rate))
    return items


def _score(model, item: VideoInput, prep: Preprocessing, meta: dict, k: int, cfg: PredictConfig,
           device: torch.device) -> dict:
    """One video row; a file that cannot be scored gets its reason as status."""
    row = {"level": "video", "study_id": item.study_id, "path": str(item.path),
           "probability": np.nan, "status": "ok", "n_videos": np.nan}
    try:
        if item.problem:
            raise VideoReadError(item.path, item.problem)
        frames, _, video, _ = decode_and_preprocess(item.path, prep, salt=cfg.salt,
                                                    manifest_fps=item.fps)
        clips = torch.from_numpy(evenly_spaced_clips(frames, meta["clip_len"], meta["period"], k))
        row["probability"] = float(predict_clips(model, clips[None], device=device,
                                                 precision=cfg.precision)[0])
        row["study_id"] = row["study_id"] or video.meta.get("study_uid_hash")
    except Exception as err:  # one bad file never stops the others
        reason = err.reason if isinstance(err, VideoReadError) else f"{type(err).__name__}: {err}"
        row["status"] = reason
    row["study_id"] = row["study_id"] or str(item.path)  # no study known: its own study
    return row


def study_rows(videos: pd.DataFrame) -> pd.DataFrame:
    """One row per study: mean probability of its scored videos; status says how many failed."""
    scored = aggregate_by_study(videos[videos["status"] == "ok"], score="probability",
                                label=None).set_index("study_id")
    rows = []
    for study, n_total in videos.groupby("study_id", sort=True).size().items():
        n_ok = int(scored["n_videos"].get(study, 0))
        if not n_ok:
            status = "no readable video"
        elif n_ok < n_total:
            status = f"ok ({n_total - n_ok} of {n_total} videos failed)"
        else:
            status = "ok"
        rows.append({"level": "study", "study_id": study, "path": "",
                     "probability": scored["probability"].get(study, np.nan),
                     "status": status, "n_videos": n_ok})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def predict(cfg: PredictConfig) -> Path:
    """Score every input with the model; write the CSV and return its path.

    The CSV has ``level`` (video | study), ``study_id`` (manifest id, else the salted hash of the
    DICOM StudyInstanceUID, else the file's path: its own study), ``path``, ``probability``,
    ``status`` (``ok`` or why the file was not scored) and ``n_videos`` (scored videos of a
    study). No identifier is written in clear.

    Raises:
        UserError: no inputs were given, or no model at ``cfg.model``.
        ValueError: the model's preprocessing is unknown.
    """
    model, meta = load_classifier(cfg.model)
    require_binary(meta, cfg.model, "predict")
    prep = replayable(preprocessing_of(meta, cfg.model), cfg.model)
    device = pick_device(cfg.device)
    model = model.to(device)
    k = cfg.clips or meta["eval_clips"]
    items = collect_inputs(cfg.inputs, cfg.view)
    if not items:
        raise UserError(f"predict: nothing to score in {list(cfg.inputs)}: give DICOM files "
                        "or folders, AVI/MP4 files or a manifest CSV")
    rows = []
    for item in tqdm(items, desc="predict", unit="video", disable=None):
        rows.append(_score(model, item, prep, meta, k, cfg, device))
        if rows[-1]["status"] != "ok":
            warnings.warn(f"predict: {item.path}: {rows[-1]['status']}; the other inputs go on",
                          stacklevel=2)
    videos = pd.DataFrame(rows, columns=list(COLUMNS))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.concat([videos, study_rows(videos)], ignore_index=True)
    table["n_videos"] = table["n_videos"].astype("Int64")  # blank on video rows
    atomic_write_text(out, table.to_csv(index=False))
    return out
