"""Positive pairs: multi-instance pairs are two different videos of one study, SimCLR pairs one
clip twice, in the dataset and in what ``pretrain`` feeds the model.

Every cached video carries its id and each frame its index in fixed pixels, so a clip (or a
scaled model input) says where it came from.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import echoclr.pretraining as pt
from echoclr.data.cache import VideoCache
from echoclr.data.datasets import StudyPairDataset
from echoclr.commands.pretrain import PretrainConfig, pretrain

VIDEOS_PER_STUDY = (1, 2, 3, 4, 2, 3)  # study k has this many videos
N_FRAMES, SIZE = 10, 16


def make_labelled_cache(root: Path) -> Path:
    """Pixel (0, 0) is 0 and (0, 1) is 255 in every frame (so min-max scaling keeps values),
    (0, 2) holds the video id (1, 2, ...), (0, 3) the frame index; the rest is noise."""
    rng = np.random.default_rng(0)
    (root / "videos").mkdir(parents=True)
    rows, video_id = [], 0
    for study, n_videos in enumerate(VIDEOS_PER_STUDY):
        for _ in range(n_videos):
            video_id += 1
            frames = rng.integers(20, 200, (N_FRAMES, SIZE, SIZE), dtype=np.uint8)
            frames[:, 0, :4] = [[0, 255, video_id, t] for t in range(N_FRAMES)]
            path = f"videos/v{video_id}.npy"
            np.save(root / path, frames)
            rows.append({"path": path, "study_id": f"S{study}", "patient_id": f"P{study}",
                         "view": "PLAX", "split": "train", "fps": 30.0, "n_frames": N_FRAMES,
                         "lvh": study % 2, "video_id": video_id})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "ingest_config.json").write_text(json.dumps({"size": SIZE, "max_frames": 100}))
    return root


@pytest.fixture
def labelled_cache(tmp_path) -> Path:
    return make_labelled_cache(tmp_path / "cache")


def study_of_video(cache: Path) -> dict[int, str]:
    manifest = pd.read_csv(cache / "manifest.csv", dtype={"study_id": str})
    return dict(zip(manifest["video_id"], manifest["study_id"]))


def video_ids(clips: torch.Tensor) -> list[int]:
    """The video id of each uint8 clip (B, T, H, W), checked constant over its frames."""
    ids = clips[:, :, 0, 2]
    assert (ids == ids[:, :1]).all()
    return ids[:, 0].tolist()


def dataset(cache: Path, **kw) -> StudyPairDataset:
    vc = VideoCache(cache)
    return StudyPairDataset(vc, vc.rows("train"), clip_len=4, **kw)


def test_all_pairs_are_every_unordered_pair_of_distinct_videos(labelled_cache):
    study = study_of_video(labelled_cache)
    ds = dataset(labelled_cache, mode="multi_instance", pairs="all")
    pairs = []
    for i in range(len(ds)):
        item = ds[i]
        (a,), (b,) = video_ids(item["clip_a"][None]), video_ids(item["clip_b"][None])
        assert study[a] == study[b]
        pairs.append((study[a], frozenset((a, b))))
    expected = []
    for s in sorted(set(study.values())):
        vids = [v for v in study if study[v] == s]
        combos = itertools.combinations(vids, 2) if len(vids) > 1 else [(vids[0], vids[0])]
        expected += [(s, frozenset(c)) for c in combos]
    assert sorted(pairs, key=str) == sorted(expected, key=str)
    assert len(ds) == 1 + 1 + 3 + 6 + 1 + 3
    # Each member of a pair gets its own random clip: frame indices are drawn per member.
    starts = {(int(ds[i]["clip_a"][0, 0, 3]), int(ds[i]["clip_b"][0, 0, 3]))
              for i in range(len(ds))}
    assert any(sa != sb for sa, sb in starts)


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_one_pair_per_study_draws_two_different_videos(labelled_cache, epoch):
    study = study_of_video(labelled_cache)
    ds = dataset(labelled_cache, mode="multi_instance", pairs="study", seed=epoch)
    assert len(ds) == len(VIDEOS_PER_STUDY)
    for i, n_videos in enumerate(VIDEOS_PER_STUDY):
        item = ds[(epoch, i)]
        (a,), (b,) = video_ids(item["clip_a"][None]), video_ids(item["clip_b"][None])
        assert study[a] == study[b] == f"S{i}"
        assert (a != b) == (n_videos > 1)


def test_simclr_pairs_are_one_clip_twice(labelled_cache):
    ds = dataset(labelled_cache, mode="simclr")
    assert len(ds) == sum(VIDEOS_PER_STUDY)
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["clip_a"], item["clip_b"])


@pytest.fixture
def fed(monkeypatch):
    """(batch, model input x) of every pretraining step."""
    steps = []
    make_views = pt.make_views

    def recording(batch, cfg, step, device, **kw):
        out = make_views(batch, cfg, step, device, **kw)
        steps.append((batch, out[0]))
        return out

    monkeypatch.setattr(pt, "make_views", recording)
    return steps


@pytest.mark.parametrize("method", ["mi-simclr", "echoclr", "simclr"])
def test_pretrain_feeds_two_videos_of_one_study_unless_simclr(labelled_cache, tmp_path, fed,
                                                              method):
    study = study_of_video(labelled_cache)
    n_videos = {s: list(study.values()).count(s) for s in set(study.values())}
    cfg = PretrainConfig(cache=str(labelled_cache), out=str(tmp_path / "run"), method=method,
                         encoder="r3d_tiny", width=4, batch_size=4, max_steps=3, workers=0,
                         clip_len=4, augment=False, precision="fp32", progress=False,
                         device="cpu", log_every=1)
    pretrain(cfg)
    assert len(fed) == 3
    distinct = 0
    for batch, x in fed:
        b = batch["study"].shape[0]
        ids_a, ids_b = video_ids(batch["clip_a"]), video_ids(batch["clip_b"])
        # The model input: channel 0, frame 0, pixel (0, 2) scaled by 1/255 (min 0, max 255).
        fed_ids = (x[:, 0, 0, 0, 2] * 255).round().long().tolist()
        assert fed_ids[:2 * b] == ids_a + ids_b
        for i, (a, v) in enumerate(zip(ids_a, ids_b)):
            assert study[a] == study[v]
            if method == "simclr":
                assert a == v and torch.equal(batch["clip_a"][i], batch["clip_b"][i])
            else:
                assert (a != v) == (n_videos[study[a]] > 1)
                distinct += a != v
        # Same study index exactly when the videos share a study.
        for i, j in itertools.combinations(range(b), 2):
            same = study[ids_a[i]] == study[ids_a[j]]
            assert (batch["study"][i] == batch["study"][j]).item() == same
    if method != "simclr":
        assert distinct >= 11  # of 15 pairs only one (the one-video study) is a video twice
