"""The synthetic echo cohort: the package's embedded default dataset (no real echo data needed).

Each patient has one study of 2-5 PLAX videos (sometimes one A4C) that share a heart, labels
(`lvh`, `severe_as`) and a machine preset, and differ in probe position, cycle phase, length and
speckle: the structure multi-instance contrastive pretraining (EchoCLR) relies on. Writes AVI
videos, a few multi-frame DICOMs with fake identifiers, `manifest.csv` and ground truth.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echoclr.data.video import write_video
from echoclr.synth.anatomy import MACHINES, Study, sample_study
from echoclr.synth.dicom import write_dicom
from echoclr.synth.render import render_video

MANIFEST_COLUMNS = ("path", "study_id", "patient_id", "view", "fps", "n_frames", "lvh", "severe_as")


@dataclass(frozen=True)
class SynthConfig:
    """What `synthesize` writes."""

    out: str  # output folder (created; files of the same name are overwritten)
    patients: int = 200  # one study per patient
    seed: int = 0  # same seed -> byte-identical manifest and identical frames
    size: int = 112  # frame height = width, pixels (EchoNet's 112 x 112)
    plax_min: int = 2  # fewest PLAX videos per study
    plax_max: int = 5  # most PLAX videos per study
    other_view_prob: float = 0.2  # chance that a study also holds one A4C video
    frames_min: int = 40  # shortest video, frames
    frames_max: int = 120  # longest video, frames
    fps_min: int = 30  # lowest study frame rate, frames/s
    fps_max: int = 80  # highest study frame rate, frames/s
    dicom_fraction: float = 0.05  # share of videos written as multi-frame DICOM instead of AVI
    lvh_prevalence: float = 0.35  # expected share of lvh = 1
    as_prevalence: float = 0.18  # expected share of severe_as = 1
    as_lvh_correlation: float = 0.35  # latent correlation of AS severity and wall thickness
    lossless: bool = True  # AVI codec: FFV1 (exact) or MJPG q2 (lossy, no smaller on speckle)
    workers: int = 1  # processes rendering studies in parallel


def study_for(cfg: SynthConfig, index: int) -> Study:
    """Patient `index` of the cohort `cfg` describes (no rendering; cheap)."""
    return sample_study(cfg.seed, index, plax_range=(cfg.plax_min, cfg.plax_max),
                        other_view_prob=cfg.other_view_prob,
                        frames_range=(cfg.frames_min, cfg.frames_max),
                        fps_range=(cfg.fps_min, cfg.fps_max), lvh_prevalence=cfg.lvh_prevalence,
                        as_prevalence=cfg.as_prevalence, as_lvh_correlation=cfg.as_lvh_correlation)


def sample_cohort(cfg: SynthConfig) -> list[Study]:
    """Every study of the cohort, without rendering."""
    return [study_for(cfg, i) for i in range(cfg.patients)]


def truth_row(study: Study) -> dict:
    """One study's continuous anatomy and preset (for analysis; never a model input)."""
    preset = dataclasses.asdict(study.preset)
    tgc = preset.pop("tgc_db")
    row = {"study_id": study.study_id, "patient_id": study.patient_id}
    row |= dataclasses.asdict(study.anatomy)
    row |= {f"preset_{k}": v for k, v in preset.items()}
    row |= {f"preset_tgc{i}_db": v for i, v in enumerate(tgc)}
    row["machine_name"] = MACHINES[study.preset.machine].name
    row["n_plax"] = sum(c.echo_view == "PLAX" for c in study.clips)
    row["n_a4c"] = sum(c.echo_view == "A4C" for c in study.clips)
    return row


def video_name(study: Study, clip_index: int, dicom: bool) -> str:
    """Path of a video relative to the output folder."""
    return (f"dicom/{study.study_id}_{clip_index + 1:02d}.dcm" if dicom
            else f"videos/{study.study_id}_{clip_index + 1:02d}.avi")


def is_dicom(cfg: SynthConfig, index: int, clip_index: int) -> bool:
    """Whether a video is written as DICOM (its own random stream: the anatomy is unaffected)."""
    rng = np.random.default_rng([cfg.seed, index, clip_index, 7])
    return bool(rng.uniform() < cfg.dicom_fraction)


def write_study(cfg: SynthConfig, index: int) -> tuple[list[dict], list[dict], dict]:
    """Render and write every video of one study; returns its manifest, video and truth rows."""
    study = study_for(cfg, index)
    out = Path(cfg.out)
    an, fps = study.anatomy, study.preset.fps
    rows, videos = [], []
    for k, clip in enumerate(study.clips):
        dicom = is_dicom(cfg, index, k)
        name = video_name(study, k, dicom)
        frames = render_video(study, k, cfg.size)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        if dicom:
            write_dicom(out / name, frames, study, k, cfg.seed, cfg.size)
        else:
            write_video(out / name, frames, fps, lossless=cfg.lossless)
        rows.append({"path": name, "study_id": study.study_id, "patient_id": study.patient_id,
                     "view": clip.echo_view, "fps": fps, "n_frames": clip.n_frames,
                     "lvh": an.lvh, "severe_as": an.severe_as})
        clip_row = dataclasses.asdict(clip)
        clip_row["tgc_db"] = " ".join(f"{v:.3f}" for v in clip_row["tgc_db"])
        videos.append({"path": name, "study_id": study.study_id, **clip_row})
    return rows, videos, truth_row(study)


def synthesize(cfg: SynthConfig) -> Path:
    """Write the cohort into `cfg.out`: videos/, dicom/, manifest.csv, truth.csv, truth_videos.csv.

    Returns:
        The path of manifest.csv (video paths in it are relative to its folder).
    """
    if cfg.patients < 1 or cfg.size < 16:
        message = f"need patients >= 1 and size >= 16, got {cfg.patients} and {cfg.size}"
        raise ValueError(f"{cfg.out}: {message}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    indices = range(cfg.patients)
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = list(tqdm(pool.map(write_study, [cfg] * cfg.patients, indices, chunksize=2),
                                total=cfg.patients, desc="synth", disable=None))
    else:
        results = [write_study(cfg, i) for i in tqdm(indices, desc="synth", disable=None)]
    manifest = pd.DataFrame([r for rows, _, _ in results for r in rows], columns=MANIFEST_COLUMNS)
    pd.DataFrame([v for _, videos, _ in results for v in videos]).to_csv(
        out / "truth_videos.csv", index=False, float_format="%.6g")
    pd.DataFrame([t for _, _, t in results]).to_csv(out / "truth.csv", index=False,
                                                    float_format="%.6g")
    manifest.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"

