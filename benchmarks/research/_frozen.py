"""What the frozen-feature probes share (``encoder_truth.py``, ``frozen_probe.py``): the encoder
and clip flags, the encoders to compare (a seeded random init and each ``--encoder`` file) and
study features (test-time clip averaging, then videos -> study)."""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from echoclr.data.cache import VideoCache
from echoclr.inference import clip_average_videos
from echoclr.metrics import aggregate_by_study
from echoclr.models import build_encoder
from echoclr.weights import load_encoder

RANDOM = "random init"


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """The encoder and clip flags of the probes."""
    p.add_argument("--encoder", action="append", default=[], help="encoder.pt (repeatable)")
    p.add_argument("--clip-len", type=int, default=4)
    p.add_argument("--period", type=int, default=2)
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--width", type=int, default=16, help="width of the random r3d_tiny")


def frozen_encoders(args: argparse.Namespace) -> dict:
    """{RANDOM: a seeded random-init r3d_tiny, path: loaded encoder for each ``--encoder``}."""
    torch.manual_seed(0)
    encoders = {RANDOM: build_encoder("r3d_tiny", width=args.width)}
    return encoders | {path: load_encoder(path)[0] for path in args.encoder}


def study_features(encoder, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int, period: int,
                   clips: int, batch: int = 32) -> pd.DataFrame:
    """Mean feature per study: (n_studies, feature_dim), indexed by study_id."""
    h = clip_average_videos(encoder, cache, rows, clip_len=clip_len, period=period, clips=clips,
                            batch_size=batch, precision="fp32")
    dims = list(range(h.shape[1]))
    table = pd.concat([rows[["study_id"]].reset_index(drop=True), pd.DataFrame(h, columns=dims)],
                      axis=1)
    return aggregate_by_study(table, score=dims, label=None).set_index("study_id")[dims]
