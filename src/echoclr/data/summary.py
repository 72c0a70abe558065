"""What a manifest or cache holds, for a person deciding whether it can train and test a model:
counts per split × view × label, videos per study, frame rates and lengths, and warnings
(a split without a class of a label, a tiny validation split, a view missing from a split).
"""

from __future__ import annotations

import pandas as pd

from echoclr.data.manifest import label_columns
from echoclr.data.splits import one_class_splits

TINY_VAL_STUDIES = 10  # fewer validation studies than this cannot select epochs or a threshold
NONE = "(none)"


def describe(df: pd.DataFrame) -> str:
    """A few paragraphs about a manifest's rows (one per video): see the module docstring."""
    df = df.copy()
    for column in ("split", "view"):
        df[column] = df[column].fillna(NONE) if column in df.columns else NONE
    labels = label_columns(df)
    lines = [f"{df['patient_id'].nunique()} patients, {df['study_id'].nunique()} studies, "
             f"{len(df)} videos"]
    per_study = df.groupby("study_id").size()
    lines.append(f"videos per study: {per_study.min()}–{per_study.max()} "
                 f"(median {per_study.median():g})" if len(per_study) else "no videos")
    for column, unit in (("fps", "frames/s"), ("n_frames", "frames")):
        if column in df.columns:
            values = pd.to_numeric(df[column], errors="coerce")
            known = values.dropna()
            text = f"{known.min():g}–{known.max():g} {unit}" if len(known) else "unknown"
            unknown = f", unknown for {values.isna().sum()} videos" if values.isna().any() else ""
            lines.append(f"{column}: {text}{unknown}")
    lines += ["", counts_table(df, labels).to_string(index=False)]
    found = warnings_about(df, labels)
    if found:
        lines += ["", "warnings:", *(f"  - {w}" for w in found)]
    return "\n".join(lines)


def counts_table(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """One row per split × view: videos, studies, and per label "positive/negative" studies."""
    rows = []
    for (split, view), group in df.groupby(["split", "view"], sort=True):
        row = {"split": split, "view": view, "videos": len(group),
               "studies": group["study_id"].nunique()}
        studies = group.drop_duplicates("study_id")
        for label in labels:
            values = pd.to_numeric(studies[label], errors="coerce")
            row[f"{label} 1/0"] = f"{int((values == 1).sum())}/{int((values == 0).sum())}"
        rows.append(row)
    return pd.DataFrame(rows)


def warnings_about(df: pd.DataFrame, labels: list[str]) -> list[str]:
    """One-class splits, a tiny validation split, views missing from a split."""
    found = one_class_splits(df[df["split"] != NONE], labels) if (df["split"] != NONE).any() \
        else []
    n_val = df.loc[df["split"] == "val", "study_id"].nunique()
    if (df["split"] != NONE).any() and n_val < TINY_VAL_STUDIES:
        found.append(f"the validation split holds {n_val} studies (fewer than "
                     f"{TINY_VAL_STUDIES}): too few to select epochs or a threshold reliably")
    splits = sorted(set(df["split"]) - {NONE})
    views = sorted(set(df["view"]) - {NONE})
    for view in views:
        absent = [s for s in splits if not ((df["split"] == s) & (df["view"] == view)).any()]
        if absent:
            found.append(f"view {view!r} is missing from split(s) {absent}")
    return found
