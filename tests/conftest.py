"""Shared fixtures: a tiny preprocessed cache built directly (no decoding), for fast tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

# Tiny tensors: one thread avoids oversubscribing the 2 cores (measured 10 ms vs 380 ms for a
# tiny forward pass with 2 threads while other processes run).
torch.set_num_threads(1)


def make_cache(root: Path, *, n_studies: int = 20, videos_per_study: int = 3, size: int = 16,
               n_frames: int = 12, seed: int = 0) -> Path:
    """A cache whose studies each have a blob of study-specific size (the `lvh` label) that
    moves over time; splits by patient (6:2:2 pattern)."""
    rng = np.random.default_rng(seed)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[:size, :size]
    for s in range(n_studies):
        label = s % 2  # every split holds both classes
        radius = rng.uniform(4.5, 6) if label else rng.uniform(2, 3.5)
        split = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
        for v in range(videos_per_study):
            phase = rng.uniform(0, 2 * np.pi)
            frames = []
            for t in range(n_frames):
                cx = size / 2 + 3 * np.sin(phase + t * 0.8)
                blob = ((yy - size / 2) ** 2 + (xx - cx) ** 2) < radius**2
                frames.append(blob * 200 + rng.integers(0, 40, (size, size)))
            path = f"videos/s{s}_v{v}.npy"
            np.save(root / path, np.asarray(frames, dtype=np.uint8))
            rows.append({"path": path, "study_id": f"S{s:03d}", "patient_id": f"P{s:03d}",
                         "view": "PLAX", "split": split[s % 10], "fps": 30.0,
                         "n_frames": n_frames, "lvh": label, "severe_as": int(s % 3 == 0)})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "ingest_config.json").write_text(json.dumps({"size": size, "max_frames": 100}))
    return root


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Path:
    return make_cache(tmp_path / "cache")


def ingest_three_view_cohort(root: Path) -> Path:
    """14 patients of the synthetic cohort with one PLAX, A4C and A2C video each (8 frames,
    48 px), ingested at 32 px with every view; returns the cache."""
    from echoclr.cli import main

    assert main(["synth", str(root / "cohort"), "--patients", "14", "--size", "48",
                 "--plax-min", "1", "--plax-max", "1", "--other-view-prob", "1",
                 "--a2c-prob", "1", "--frames-min", "8", "--frames-max", "8",
                 "--fps-min", "30", "--fps-max", "30", "--dicom-fraction", "0"]) == 0
    assert main(["ingest", str(root / "cohort" / "manifest.csv"), "--out", str(root / "cache"),
                 "--size", "32", "--splits", "0.5", "0.25", "0.25",
                 "--accept-one-class-splits", "--salt", "test"]) in (0, 1)
    return root / "cache"


@pytest.fixture(scope="module")
def three_view_cache(tmp_path_factory) -> Path:
    """:func:`ingest_three_view_cohort`, once per test module (a module may rewrite its
    manifest, as ``views --write-manifest`` does)."""
    return ingest_three_view_cohort(tmp_path_factory.mktemp("views"))


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a fine-tuning epoch starts: its error must come before any training."""
    import echoclr.commands.finetune as ft

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(ft, "train_one_epoch", refuse)
