"""Which cached videos a readout learns from: the drawn label fraction of the training studies,
and the labeled validation studies (Holste et al. 2024: validation is used whole, even at 1 %)."""

from __future__ import annotations

import hashlib

import pandas as pd

from echoclr.data.cache import VideoCache
from echoclr.data.manifest import label_fraction_studies


def select_rows(cache: VideoCache, *, task: str, fraction: float, fraction_seed: int,
                view: str | None, val_fraction: float = 1.0
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training videos of the drawn label fraction, and the labeled validation videos.

    The training subset is :func:`~echoclr.data.manifest.label_fraction_studies` (nested,
    stratified, seeded by ``fraction_seed``): the same studies for every init at one draw.
    """
    train = cache.rows("train", view)
    subsets = label_fraction_studies(train, label=task, fractions=[fraction], seed=fraction_seed)
    train = train[train["study_id"].isin(subsets[fraction])]
    val = cache.rows("val", view)
    val = val[val[task].notna()]
    if val_fraction < 1:
        val_studies = label_fraction_studies(val.assign(split="train"), label=task,
                                             fractions=[val_fraction], seed=fraction_seed)
        val = val[val["study_id"].isin(val_studies[val_fraction])]
    if val.empty:
        raise ValueError(f"{cache.root}: no labeled validation videos for {task!r}")
    return train.reset_index(drop=True), val.reset_index(drop=True)


def studies_fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) of the sorted study ids of ``rows``: equal for runs that learned
    from the same labeled studies (written to each run's config.json)."""
    ids = "\n".join(sorted(rows["study_id"].astype(str).unique()))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]
