"""Splits drawn by patient (never by video, so no patient is in two splits), stratified by the
label columns, and the check that every drawn split holds both classes of every label.

As in Holste et al. 2024, a patient's videos share its split; a small validation split that
holds one class cannot select epochs or thresholds, so ingest reports it before writing a cache.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DRAWN = ("train", "val", "test")  # the splits assign_splits draws


def assign_splits(
    df: pd.DataFrame, *, stratify: str | None = None, seed: int = 0,
    fractions: tuple[float, float, float] = (0.75, 0.10, 0.15),
) -> pd.DataFrame:
    """Return a copy with a ``split`` column drawn by **patient**: train/val/test.

    Patients are stratified by ``stratify``, one label column or several joined by commas (a
    patient is positive if any of its studies is; unlabeled patients form their own stratum) and
    shuffled with ``seed``; within each stratum the first ``fractions[0]`` go to train, the next
    ``fractions[1]`` to val, the rest to test. Rows that already carry a split keep it.
    """
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions {fractions} must sum to 1")
    out = df.copy()
    out["split"] = (out["split"] if "split" in out.columns else None)
    out["split"] = out["split"].astype(object).where(out["split"].notna(), None)
    todo = out["split"].isna()
    patients = out.loc[todo, ["patient_id"]].drop_duplicates()
    patients["stratum"] = ""
    for column in (stratify.split(",") if stratify else []):
        lab = pd.to_numeric(out.loc[todo, column.strip()], errors="coerce")
        per_patient = lab.groupby(out.loc[todo, "patient_id"]).max()
        patients["stratum"] += patients["patient_id"].map(per_patient).fillna(-1).astype(str) + "|"
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, group in patients.groupby("stratum", sort=True):
        ids = group["patient_id"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n_train = int(round(fractions[0] * len(ids)))
        n_val = int(round(fractions[1] * len(ids)))
        for i, pid in enumerate(ids):
            assignment[pid] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    out.loc[todo, "split"] = out.loc[todo, "patient_id"].map(assignment)
    return out


def class_counts(df: pd.DataFrame, label: str) -> dict[str, tuple[int, int]]:
    """{split: (positive studies, negative studies)} of one label, unlabeled studies left out;
    every drawn split is listed, empty ones as (0, 0)."""
    studies = df.drop_duplicates("study_id")
    values = pd.to_numeric(studies[label], errors="coerce")
    splits = [*DRAWN, *sorted(set(studies["split"].dropna()) - set(DRAWN))]
    return {s: (int((values[studies["split"] == s] == 1).sum()),
                int((values[studies["split"] == s] == 0).sum())) for s in splits}


def one_class_splits(df: pd.DataFrame, labels: list[str]) -> list[str]:
    """A sentence per (split, label) where the split lacks a class, with every split's counts:
    "split 'val' has no positive study for label 'lvh' (positive/negative studies: train 2/3,
    val 0/1, test 1/1)"."""
    found = []
    for label in labels:
        counts = class_counts(df, label)
        table = ", ".join(f"{s} {p}/{n}" for s, (p, n) in counts.items())
        for split, (pos, neg) in counts.items():
            lacking = [name for name, k in (("positive", pos), ("negative", neg)) if k == 0]
            if lacking:
                found.append(f"split {split!r} has no {' and no '.join(lacking)} study for label "
                             f"{label!r} (positive/negative studies: {table})")
    return found
