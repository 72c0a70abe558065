"""What a pretrained encoder's frozen features encode, on the synthetic cohort.

For each test study of a cache built from ``echoclr synth``, averages the encoder's features
over ``--clips`` evenly spaced clips of each PLAX video and over the study's videos, then
predicts each continuous ground-truth parameter of ``truth.csv`` (wall thickness, valve opening,
calcification, LA size, imaging depth, gain, ...) with a ridge regression and prints its 5-fold
cross-validated R² — for a random-init encoder and for each ``--encoder`` file. Anatomy R² far
above random init's means pretraining learned it; acquisition R² (depth, gain) shows how much
of the features is scanner fingerprint.

    PYTHONPATH=src python benchmarks/encoder_truth.py CACHE COHORT/truth.csv \\
        --encoder RUN/encoder.pt --period 2
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from echoclr.data.cache import VideoCache
from echoclr.inference import clip_average_videos
from echoclr.metrics import aggregate_by_study
from echoclr.models import build_encoder
from echoclr.weights import load_encoder

TRUTH = ("wall_mm", "lv_edd_mm", "la_mm", "ef", "av_opening", "av_calcification", "hr_bpm",
         "echogenicity", "chest_mm", "preset_depth_mm", "preset_gain_db",
         "preset_dynamic_range_db")


def study_features(encoder, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int, period: int,
                   clips: int, batch: int = 32) -> pd.DataFrame:
    """Mean feature per study: (n_studies, feature_dim), indexed by study_id."""
    h = clip_average_videos(encoder, cache, rows, clip_len=clip_len, period=period, clips=clips,
                            batch_size=batch, precision="fp32")
    dims = list(range(h.shape[1]))
    table = pd.concat([rows[["study_id"]].reset_index(drop=True), pd.DataFrame(h, columns=dims)],
                      axis=1)
    return aggregate_by_study(table, score=dims, label=None).set_index("study_id")[dims]


def r2_table(features: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """5-fold CV R² of a ridge regression from features to each truth column."""
    target = truth.loc[features.index]
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 12)))
    return {c: float(cross_val_score(model, features.to_numpy(), target[c].to_numpy(float),
                                     cv=5, scoring="r2").mean())
            for c in TRUTH if c in target}


RANDOM = "random init"


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """The encoder and clip flags shared with ``frozen_probe.py``."""
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="folder written by `echoclr ingest` from a synthetic cohort")
    p.add_argument("truth", help="the cohort's truth.csv")
    p.add_argument("--split", default="test")
    add_encoder_arguments(p)
    args = p.parse_args()
    cache = VideoCache(args.cache)
    rows = cache.rows(args.split, "PLAX").reset_index(drop=True)
    truth = pd.read_csv(args.truth).set_index("study_id")
    encoders = frozen_encoders(args)
    print(f"{rows.study_id.nunique()} {args.split} studies; 5-fold CV ridge R² per parameter")
    for name, encoder in encoders.items():
        feats = study_features(encoder, cache, rows, clip_len=args.clip_len, period=args.period,
                               clips=args.clips)
        table = r2_table(feats, truth)
        print(f"{name}:\n  " + " | ".join(f"{k} {v:.2f}" for k, v in table.items()))


if __name__ == "__main__":
    main()
