"""The synthetic echo cohort: the package's embedded default dataset (no real echo data needed).

Each patient has one study of 2-5 PLAX videos (sometimes one A4C) that share a heart, labels
(`lvh`, `severe_as`) and a machine preset, and differ in probe position, cycle phase, length and
speckle: the structure multi-instance contrastive pretraining (EchoCLR) relies on. Writes AVI
videos, a few multi-frame DICOMs with fake identifiers, `manifest.csv` and ground truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echoclr.data.video import write_video
from echoclr.options import opt, required
from echoclr.synth.anatomy import MACHINES, Study, sample_study
from echoclr.synth.dicom import write_dicom
from echoclr.synth.render import render_video

MANIFEST_COLUMNS = ("path", "study_id", "patient_id", "view", "fps", "n_frames", "lvh", "severe_as")


@dataclass(frozen=True)
class SynthConfig:
    """The cohort `echoclr synth` writes (:func:`echoclr.commands.synth.synthesize`)."""

    out: str = required("Output folder; created, and files of the same name are overwritten.")
    patients: int = opt(200, "Patients in the cohort, one study each.")
    seed: int = opt(0, "Seed of the cohort; the same seed writes a byte-identical manifest and "
                       "identical frames.")
    size: int = opt(112, "Frame height and width, in pixels (EchoNet's 112 x 112).")
    plax_min: int = opt(2, "Fewest PLAX videos per study.")
    plax_max: int = opt(5, "Most PLAX videos per study.")
    other_view_prob: float = opt(0.2, "Chance that a study also holds one A4C video.")
    a2c_prob: float = opt(0.0, "Chance that a study also holds one A2C video (a third view "
                               "for view classification).")
    frames_min: int = opt(40, "Frames of the shortest video.")
    frames_max: int = opt(120, "Frames of the longest video.")
    fps_min: int = opt(30, "Lowest frame rate of a study, frames/s.")
    fps_max: int = opt(80, "Highest frame rate of a study, frames/s.")
    dicom_fraction: float = opt(0.05, "Share of the videos written as multi-frame DICOM instead "
                                      "of AVI.")
    lvh_prevalence: float = opt(0.35, "Expected share of studies with lvh = 1.")
    as_prevalence: float = opt(0.18, "Expected share of studies with severe_as = 1.")
    as_lvh_correlation: float = opt(0.35, "Latent correlation of AS severity and wall "
                                          "thickness.")
    lossless: bool = opt(True, "Write AVIs as FFV1 (exact); off: MJPG at quality 2 (lossy, and "
                               "no smaller on speckle).")
    workers: int = opt(1, "Processes rendering studies in parallel.")


def study_for(cfg: SynthConfig, index: int) -> Study:
    """Patient `index` of the cohort `cfg` describes (no rendering; cheap)."""
    return sample_study(cfg.seed, index, plax_range=(cfg.plax_min, cfg.plax_max),
                        other_view_prob=cfg.other_view_prob, a2c_prob=cfg.a2c_prob,
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
    row["n_a2c"] = sum(c.echo_view == "A2C" for c in study.clips)
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
