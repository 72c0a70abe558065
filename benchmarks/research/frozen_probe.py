"""Linear probe on a frozen encoder: does pretraining help a label-poor classifier?

Study features (the mean over ``--clips`` evenly spaced clips per PLAX video, then over the
study's videos) feed an L2 logistic regression trained on a nested, stratified label fraction of
the training studies (the same subsets for every encoder) and scored on the test split. Prints
study-level test AUROC per encoder, task and fraction, averaged over ``--draws`` label draws,
and DeLong's paired p against random init for each draw. This is the acceptance measure of the
pretraining issue ("a linear probe on the frozen encoder beats the same probe on random init").

    PYTHONPATH=src python benchmarks/research/frozen_probe.py CACHE --encoder RUN/encoder.pt \\
        --tasks lvh severe_as --fractions 0.05 0.1 0.25 1 --period 2
"""

from __future__ import annotations

import argparse

import numpy as np
from _frozen import RANDOM, add_encoder_arguments, frozen_encoders, study_features
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from echoclr.data.cache import VideoCache
from echoclr.data.manifest import label_fraction_studies
from echoclr.metrics import auroc
from echoclr.significance import delong_test


def probe_scores(train_x, train_y, test_x, *, c: float) -> np.ndarray:
    """Test-study probabilities of an L2 logistic regression (class-balanced) on frozen features."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                               max_iter=2000))
    model.fit(train_x, train_y)
    return model.predict_proba(test_x)[:, 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="folder written by `echoclr ingest`")
    p.add_argument("--tasks", nargs="+", default=["lvh", "severe_as"])
    p.add_argument("--fractions", nargs="+", type=float, default=[0.05, 0.1, 0.25, 1.0])
    p.add_argument("--draws", type=int, default=3, help="label draws (fraction seeds) per cell")
    p.add_argument("--c", type=float, default=0.1, help="inverse L2 strength (fixed: no tuning "
                   "on the test split, and too few labels at 5 %% to tune on)")
    add_encoder_arguments(p)
    args = p.parse_args()

    cache = VideoCache(args.cache)
    rows = {s: cache.rows(s, "PLAX").reset_index(drop=True) for s in ("train", "test")}
    studies = cache.manifest.drop_duplicates("study_id").set_index("study_id")
    encoders = frozen_encoders(args)
    feats = {name: {s: study_features(enc, cache, r, clip_len=args.clip_len, period=args.period,
                                      clips=args.clips) for s, r in rows.items()}
             for name, enc in encoders.items()}
    for task in args.tasks:
        test_ids = feats[RANDOM]["test"].index
        y_test = studies.loc[test_ids, task].to_numpy(int)
        print(f"\n{task}: {len(test_ids)} test studies ({y_test.sum()} positive); "
              f"study-level test AUROC, mean ± sd over {args.draws} label draws")
        for f in args.fractions:
            scores = {name: [] for name in encoders}
            n_train = 0
            for draw in range(args.draws):
                ids = label_fraction_studies(cache.manifest, label=task, fractions=[f],
                                             seed=draw)[f]
                n_train = len(ids)
                y_train = studies.loc[ids, task].to_numpy(int)
                for name in encoders:
                    x = feats[name]
                    s = probe_scores(x["train"].loc[ids].to_numpy(), y_train,
                                     x["test"].loc[test_ids].to_numpy(), c=args.c)
                    scores[name].append(s)
            line = [f"  {f:>5.0%} ({n_train:>3} studies)"]
            for name, ss in scores.items():
                aucs = [auroc(y_test, s) for s in ss]
                text = f"{name.split('/')[-2] if '/' in name else name} " \
                       f"{np.mean(aucs):.3f}±{np.std(aucs):.3f}"
                if name != RANDOM:
                    ps = [delong_test(y_test, s, r)["p_value"]
                          for s, r in zip(ss, scores[RANDOM])]
                    text += " (p " + "/".join(f"{v:.3g}" for v in ps) + ")"
                line.append(text)
            print(" | ".join(line))


if __name__ == "__main__":
    main()
