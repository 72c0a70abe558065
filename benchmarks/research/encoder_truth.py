"""What a pretrained encoder's frozen features encode, on the synthetic cohort.

For each test study of a cache built from ``echoclr synth``, averages the encoder's features
over ``--clips`` evenly spaced clips of each PLAX video and over the study's videos, then
predicts each continuous ground-truth parameter of ``truth.csv`` (wall thickness, valve opening,
calcification, LA size, imaging depth, gain, ...) with a ridge regression and prints its 5-fold
cross-validated R² — for a random-init encoder and for each ``--encoder`` file. Anatomy R² far
above random init's means pretraining learned it; acquisition R² (depth, gain) shows how much
of the features is scanner fingerprint.

    PYTHONPATH=src python benchmarks/research/encoder_truth.py CACHE COHORT/truth.csv \\
        --encoder RUN/encoder.pt --period 2
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from _frozen import add_encoder_arguments, frozen_encoders, study_features
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from echoclr.data.cache import VideoCache

TRUTH = ("wall_mm", "lv_edd_mm", "la_mm", "ef", "av_opening", "av_calcification", "hr_bpm",
         "echogenicity", "chest_mm", "preset_depth_mm", "preset_gain_db",
         "preset_dynamic_range_db")


def r2_table(features: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """5-fold CV R² of a ridge regression from features to each truth column."""
    target = truth.loc[features.index]
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 12)))
    return {c: float(cross_val_score(model, features.to_numpy(), target[c].to_numpy(float),
                                     cv=5, scoring="r2").mean())
            for c in TRUTH if c in target}


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
