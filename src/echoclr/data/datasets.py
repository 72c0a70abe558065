"""Datasets over a preprocessed cache: clips for fine-tuning, pairs for pretraining.

Items are uint8 tensors; scaling, augmentation and frame permutation run batched in the
training step (see ``transforms``), so the loader only memory-maps and slices arrays.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from echoclr.data.cache import VideoCache
from echoclr.data.transforms import (
    evenly_spaced_clips, random_start, sample_clip,
)


class _CacheDataset(Dataset):
    """Shared machinery: rows of a cache and a per-item RNG that is seedable and worker-safe."""

    def __init__(self, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int, period: int,
                 seed: int = 0):
        self.cache, self.rows = cache, rows.reset_index(drop=True)
        self.paths = self.rows["path"].tolist()  # a list lookup, not a pandas row, per item
        self.clip_len, self.period, self.seed = clip_len, period, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random clips drawn (deterministic per (seed, epoch, index))."""
        self.epoch = epoch

    def _key(self, key: int | tuple[int, int]) -> tuple[int, np.random.Generator]:
        """An item key is an index, or (epoch, index) from :class:`ResumableSampler`; the RNG
        depends only on (seed, epoch, index)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        return index, np.random.default_rng([self.seed, epoch, index])

    def _random_clip(self, path: str, rng: np.random.Generator) -> torch.Tensor:
        video = self.cache.open(path)
        start = random_start(len(video), self.clip_len, self.period, rng)
        return torch.from_numpy(sample_clip(video, self.clip_len, self.period, start))


class ClipDataset(_CacheDataset):
    """One video per item: a random clip (training) or ``k`` evenly spaced clips (evaluation).

    Item: dict(clip=uint8 (clip_len, H, W) or (k, clip_len, H, W), label=float, index=int).
    """

    def __init__(self, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int = 16,
                 period: int = 1, label: str | None = None, eval_clips: int | None = None,
                 seed: int = 0):
        super().__init__(cache, rows, clip_len=clip_len, period=period, seed=seed)
        self.label, self.eval_clips = label, eval_clips
        self.labels = (self.rows[label].astype(float).tolist() if label
                       else [float("nan")] * len(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, rng = self._key(key)
        if self.eval_clips:
            clip = torch.from_numpy(evenly_spaced_clips(
                self.cache.open(self.paths[index]), self.clip_len, self.period, self.eval_clips))
        else:
            clip = self._random_clip(self.paths[index], rng)
        return {"clip": clip, "label": torch.tensor(self.labels[index]), "index": index}


class StudyPairDataset(_CacheDataset):
    """Positive pairs for contrastive pretraining.

    ``mode="multi_instance"``: two *distinct* videos of one study, each its own random clip
    (a one-video study is paired with itself). ``pairs="all"`` enumerates every unordered pair
    of a study's videos per epoch, as the paper's code does; ``pairs="study"`` draws one random
    pair per study per epoch, so every study weighs the same and no study repeats in an epoch.
    ``mode="simclr"``: one clip per video, returned twice (augmentation makes the two views).

    Item: dict(clip_a, clip_b: uint8 (clip_len, H, W), study=int study index).
    """

    def __init__(self, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int = 4,
                 period: int = 1, mode: str = "multi_instance", pairs: str = "all",
                 seed: int = 0):
        super().__init__(cache, rows, clip_len=clip_len, period=period, seed=seed)
        if mode not in ("multi_instance", "simclr"):
            raise ValueError(f"unknown pair mode {mode!r}")
        if pairs not in ("all", "study"):
            raise ValueError(f"unknown pairs policy {pairs!r}")
        self.mode, self.pairs = mode, pairs
        codes, self.study_ids = pd.factorize(self.rows["study_id"], sort=True)
        self.study_of_row = codes
        self.videos_of_study = [np.flatnonzero(codes == s) for s in range(len(self.study_ids))]
        if mode == "simclr":
            self.items = [(i, i) for i in range(len(self.rows))]
        elif pairs == "all":
            self.items = [pair for vids in self.videos_of_study
                          for pair in (itertools.combinations(vids, 2) if len(vids) > 1
                                       else [(vids[0], vids[0])])]
        else:
            self.items = list(range(len(self.study_ids)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, rng = self._key(key)
        if self.mode == "multi_instance" and self.pairs == "study":
            vids = self.videos_of_study[self.items[index]]
            a, b = rng.choice(vids, 2, replace=False) if len(vids) > 1 else (vids[0], vids[0])
        else:
            a, b = self.items[index]
        clip_a = self._random_clip(self.paths[a], rng)
        clip_b = clip_a if self.mode == "simclr" else self._random_clip(self.paths[b], rng)
        return {"clip_a": clip_a, "clip_b": clip_b, "study": int(self.study_of_row[a])}
