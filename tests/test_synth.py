"""The synthetic echo cohort: files, determinism, labels, study structure, rendered anatomy."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pydicom
import pytest
from sklearn.metrics import roc_auc_score

from echoclr.commands.synth import synthesize
from echoclr.synth.cohort import MANIFEST_COLUMNS, SynthConfig, sample_cohort, study_for
from echoclr.synth.render import heart_to_pixel, render_video

TINY = dict(patients=6, seed=3, size=32, frames_min=6, frames_max=10, other_view_prob=0.5,
            dicom_fraction=0.3)


def read_avi(path: Path) -> tuple[np.ndarray, Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="gray") for f in container.decode(stream)])
        return frames, stream.average_rate


def read_any(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array if path.suffix == ".dcm" else read_avi(path)[0]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return synthesize(SynthConfig(out=str(tmp_path_factory.mktemp("synth")), **TINY))


def test_manifest_columns_and_study_structure(cohort):
    df = pd.read_csv(cohort, dtype={"study_id": str, "patient_id": str})
    assert tuple(df.columns) == MANIFEST_COLUMNS and "split" not in df.columns
    assert df.study_id.nunique() == TINY["patients"]
    for _, videos in df.groupby("study_id"):
        views = videos.view.value_counts()
        assert 2 <= views.get("PLAX", 0) <= 5 and views.get("A4C", 0) <= 1
        for column in ("patient_id", "fps", "lvh", "severe_as"):
            assert videos[column].nunique() == 1  # one patient, one preset, one heart per study
    assert (df.view == "A4C").any() and set(df.view) == {"PLAX", "A4C"}
    assert df.fps.between(30, 80).all() and set(df.lvh) | set(df.severe_as) <= {0, 1}
    assert df.path.str.endswith(".dcm").any() and df.path.str.endswith(".avi").any()
    assert all((cohort.parent / p).is_file() for p in df.path)
    truth = pd.read_csv(cohort.parent / "truth.csv")
    assert len(truth) == TINY["patients"]
    assert {"wall_mm", "av_opening", "hr_bpm"} <= set(truth.columns)


def test_avi_readable_with_declared_frames_and_fps(cohort):
    df = pd.read_csv(cohort)
    avis = df[df.path.str.endswith(".avi")]
    for row in avis.itertuples():
        frames, rate = read_avi(cohort.parent / row.path)
        assert frames.shape == (row.n_frames, TINY["size"], TINY["size"])
        assert frames.dtype == np.uint8
        assert rate == row.fps
        assert frames.std() > 5  # an image, not a blank


def test_dicom_readable_with_fake_identifiers(cohort):
    df = pd.read_csv(cohort)
    dicoms = df[df.path.str.endswith(".dcm")]
    for row in dicoms.itertuples():
        ds = pydicom.dcmread(cohort.parent / row.path)
        assert ds.SOPClassUID == pydicom.uid.UltrasoundMultiFrameImageStorage
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 8
        assert int(ds.NumberOfFrames) == row.n_frames and int(ds.CineRate) == row.fps
        assert float(ds.FrameTime) == pytest.approx(1000 / row.fps, rel=1e-3)
        assert str(ds.PatientName).startswith("SYNTH^") and ds.PatientID.startswith("SYNTH-")
        assert len(ds.PatientBirthDate) == 8 and ds.PatientBirthDate.isdigit()
        assert ds.pixel_array.shape == (row.n_frames, TINY["size"], TINY["size"])


def test_same_seed_same_bytes_and_frames(cohort, tmp_path):
    again = synthesize(SynthConfig(out=str(tmp_path / "again"), **TINY))
    assert again.read_bytes() == cohort.read_bytes()
    assert (again.parent / "truth.csv").read_bytes() == (cohort.parent / "truth.csv").read_bytes()
    for path in pd.read_csv(cohort).path:
        assert np.array_equal(read_any(again.parent / path), read_any(cohort.parent / path))
    other = synthesize(SynthConfig(out=str(tmp_path / "other"), **{**TINY, "seed": 4}))
    assert other.read_bytes() != cohort.read_bytes()


def test_parallel_workers_write_the_same_cohort(cohort, tmp_path):
    cfg = SynthConfig(out=str(tmp_path / "pool"), workers=2, **{**TINY, "patients": 3})
    manifest = synthesize(cfg)
    first = pd.read_csv(cohort)
    first = first[first.study_id.isin(pd.read_csv(manifest).study_id)]
    assert manifest.read_text() == first.to_csv(index=False)  # prefix-stable and order-stable


def test_label_prevalence_and_ceiling_from_the_sampler():
    studies = sample_cohort(SynthConfig(out="unused", patients=400, seed=1))
    lvh = np.array([s.anatomy.lvh for s in studies])
    severe_as = np.array([s.anatomy.severe_as for s in studies])
    assert 0.28 <= lvh.mean() <= 0.42 and 0.12 <= severe_as.mean() <= 0.25
    assert lvh[severe_as == 1].mean() > lvh[severe_as == 0].mean() + 0.05  # AS comes with LVH
    wall = [s.anatomy.wall_mm for s in studies]
    opening = [s.anatomy.av_opening for s in studies]
    # Labels are noisy thresholds: informative, never exact.
    assert 0.82 < roc_auc_score(lvh, wall) < 0.98
    assert 0.82 < roc_auc_score(severe_as, -np.array(opening)) < 0.98


def test_videos_share_the_study_heart_and_preset_but_not_the_clip():
    studies = sample_cohort(SynthConfig(out="unused", patients=40, seed=2))
    for study in studies:
        clips = study.clips
        for field in ("angle_deg", "shift_x_mm", "start_phase", "speckle_seed"):
            assert len({getattr(c, field) for c in clips}) == len(clips)  # every video re-drawn
    # Settings seen by each video: study preset + clip jitter; they vary far less within a study.
    gain = [[s.preset.gain_db + c.gain_db for c in s.clips] for s in studies]
    depth = [[s.preset.depth_mm + c.depth_step_mm for c in s.clips] for s in studies]
    for values in (gain, depth):
        within = np.mean([np.std(v) for v in values])
        between = np.std([np.mean(v) for v in values])
        assert within < 0.8 * between, (within, between)
    assert len({s.preset.machine for s in studies}) > 2


def test_a_studys_videos_look_alike():
    """Rendered: each PLAX video's nearest neighbour (pooled pixels) is mostly its sibling."""
    studies = sample_cohort(SynthConfig(out="unused", patients=8, seed=5))
    feats = []
    for study in studies:
        plax = [k for k, c in enumerate(study.clips) if c.echo_view == "PLAX"][:2]
        for k in plax:
            frames = render_video(study, k, 32, times=np.linspace(0, 1.0, 6), text=False)
            feats.append(frames.reshape(6, 8, 4, 8, 4).mean(axis=(0, 2, 4)).ravel())
    feats = np.array(feats, float)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    dist = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    hits = dist.argmin(1) // 2 == np.arange(len(feats)) // 2
    assert hits.mean() >= 0.5, hits  # chance: 1 / 15
    # ... yet they are different acquisitions, not copies.
    a, b = (render_video(studies[0], k, 32, times=np.array([0.0]), text=False)[0] for k in (0, 1))
    shown = (a > 0) | (b > 0)
    assert np.mean(a[shown] != b[shown]) > 0.8


def septum_thickness_px(study, size: int) -> float:
    """Bright run (px) through mid-septum on the end-diastolic frame, along the image column."""
    an = study.anatomy
    frame = render_video(study, 0, size, times=np.array([0.0]), text=False)[0].astype(float)
    u_mid = -0.45 * an.lv_length_mm * study.clips[0].scale
    half = an.lv_edd_mm * study.clips[0].scale / 2
    row, col = heart_to_pixel(study, 0, size, u_mid, -half - an.septum_mm / 2)
    cavity_row, _ = heart_to_pixel(study, 0, size, u_mid, 0.0)
    col = int(round(float(col)))
    profile = frame[:, col - 2:col + 3].mean(axis=1)
    profile = np.convolve(profile, np.ones(3) / 3, mode="same")
    centre, cavity = int(round(float(row))), int(round(float(cavity_row)))
    threshold = (profile[centre - 1:centre + 2].max() + profile[cavity - 2:cavity + 3].mean()) / 2
    top = centre
    while profile[top - 1] > threshold:
        top -= 1
    bottom = centre
    while profile[bottom + 1] > threshold:
        bottom += 1
    return bottom - top + 1


def test_rendered_septum_thickens_with_the_anatomy_parameter():
    base = study_for(SynthConfig(out="unused", seed=0), 1)
    thickness = {}
    for mm in (7.0, 10.0, 13.0, 16.0):
        heart = dataclasses.replace(base.anatomy, septum_mm=mm, posterior_mm=mm, wall_mm=mm)
        thickness[mm] = septum_thickness_px(dataclasses.replace(base, anatomy=heart), 96)
    values = list(thickness.values())
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), thickness
    from echoclr.synth.render import fan_geometry

    depth, _, _, radius = fan_geometry(base, base.clips[0], 96)
    slope = (thickness[16.0] - thickness[7.0]) / 9.0  # px per mm of wall
    assert 0.6 * radius / depth < slope < 1.6 * radius / depth, (slope, radius / depth)
