"""How hard are the synthetic cohort's labels? Prints the label-noise ceiling and simple baselines.

1. Ceiling: AUROC of the true continuous parameter for each label (20,000 sampled hearts).
2. Pixel baseline: logistic regression on per-study pixel features (mean and temporal SD of 16
   frames spanning ~1.3 s of the first PLAX video, text off as after fan masking, area-downsampled)
   trained on few vs many labelled studies; 10 label draws per size, fixed held-out test studies.
3. Positive retrieval with the same trivial features: for two PLAX videos per study, is the nearest
   other video (cosine) in a pool of 64 studies from the same study? (chance ~ 1/127)

Usage: PYTHONPATH=src python benchmarks/research/synth_difficulty.py [--studies 600] [--size 112]
       [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from echoclr.synth.anatomy import sample_anatomy, sample_study
from echoclr.synth.render import render_video

LABELS = ("lvh", "severe_as")
C_GRID = (0.003, 0.03, 0.3, 3.0)  # inverse L2 strengths tried; the best on test is reported


def ceiling(n: int = 20000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    hearts = [sample_anatomy(rng) for _ in range(n)]
    lvh = np.array([h.lvh for h in hearts])
    sas = np.array([h.severe_as for h in hearts])
    wall = np.array([h.wall_mm for h in hearts])
    sev = np.array([h.as_severity for h in hearts])
    opening = np.array([h.av_opening for h in hearts])
    print(f"prevalence: lvh {lvh.mean():.3f}  severe_as {sas.mean():.3f}  "
          f"P(lvh | AS) {lvh[sas == 1].mean():.2f} vs P(lvh | no AS) {lvh[sas == 0].mean():.2f}")
    print(f"ceiling AUROC: lvh ~ wall_mm {roc_auc_score(lvh, wall):.3f}; "
          f"severe_as ~ as_severity {roc_auc_score(sas, sev):.3f}, "
          f"~ -av_opening {roc_auc_score(sas, -opening):.3f}")


def study_features(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(features of two PLAX videos (2, F), labels) of study `index`."""
    index, size, grid = args
    study = sample_study(0, index)
    plax = [k for k, c in enumerate(study.clips) if c.echo_view == "PLAX"][:2]
    feats = []
    for k in plax:
        times = np.linspace(0, 1.3, 16)
        frames = render_video(study, k, size, times=times, text=False).astype(np.float32) / 255
        pooled = frames.reshape(16, grid, size // grid, grid, size // grid).mean(axis=(2, 4))
        feats.append(np.concatenate([pooled.mean(0).ravel(), pooled.std(0).ravel()]))
    return np.stack(feats), study.anatomy.lvh, study.anatomy.severe_as


def pixel_baseline(x: np.ndarray, labels: dict[str, np.ndarray], n_test: int = 200) -> None:
    study_x = x.mean(axis=1)  # average the two videos -> study
    train_pool, test = np.arange(len(x) - n_test), np.arange(len(x) - n_test, len(x))
    for name, y in labels.items():
        line = []
        for n_train in (25, 50, 100, 200, len(train_pool)):
            aucs = []
            for rep in range(10 if n_train < len(train_pool) else 1):
                rng = np.random.default_rng(rep)
                while True:  # a draw holding both classes
                    pick = rng.choice(train_pool, n_train, replace=False)
                    if 0 < y[pick].sum() < n_train:
                        break
                scaler = StandardScaler().fit(study_x[pick])
                for c in C_GRID:
                    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
                    model.fit(scaler.transform(study_x[pick]), y[pick])
                    score = model.decision_function(scaler.transform(study_x[test]))
                    aucs.append((c, roc_auc_score(y[test], score)))
            by_c = {c: np.mean([a for cc, a in aucs if cc == c]) for c in C_GRID}
            c_best = max(by_c, key=by_c.get)  # optimistic: C picked on test (an upper bound)
            line.append(f"n={n_train}: {by_c[c_best]:.3f} (C={c_best})")
        print(f"pixel logistic regression, {name}: " + "; ".join(line))


def retrieval(x: np.ndarray, pool: int = 64) -> None:
    hits = []
    for start in range(0, len(x) - pool + 1, pool):
        feats = x[start:start + pool].reshape(2 * pool, -1)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        sim = feats @ feats.T
        np.fill_diagonal(sim, -np.inf)
        hits.append(sim.argmax(1) // 2 == np.arange(2 * pool) // 2)
    print(f"positive retrieval with pixel features (pool {pool} studies): {np.mean(hits):.3f} "
          f"(chance {1 / (2 * pool - 1):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--grid", type=int, default=16, help="feature map side after pooling")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ceiling()
    start = time.time()
    jobs = [(i, args.size, args.grid) for i in range(args.studies)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(study_features, jobs, chunksize=8))
    print(f"rendered {args.studies} studies x 2 videos x 16 frames in {time.time() - start:.0f} s")
    x = np.stack([r[0] for r in results])
    labels = {name: np.array([r[i + 1] for r in results]) for i, name in enumerate(LABELS)}
    pixel_baseline(x, labels)
    retrieval(x)


if __name__ == "__main__":
    main()
