"""Multi-class tasks: a categorical column of video labels, such as the echo ``view``.

Binary labels (0/1) belong to studies; a categorical label belongs to each video (one study
holds PLAX, A4C and A2C videos). A task is categorical when its column holds text rather than
0/1 — in a manifest that ingest accepted, that is ``view``. Labels are compared stripped and
upper-cased; blank, ``unknown``, ``nan`` and ``none`` cells are unlabeled videos. After
``echoclr views --write-manifest`` the ``view`` column holds a model's predictions and the labels
as given are kept in ``view_given``: those are read, so no model learns from predicted views.

The label fraction of a categorical task is drawn over the training studies that hold a labeled
video (seeded, nested: a smaller fraction's studies lie inside a larger one's), the videos of a
drawn study all kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.errors import UserError

UNLABELED = ("", "NAN", "NONE", "UNKNOWN")
CLASS_COLUMN = "_class"  # index of a video's class in the task's class list, -1: unlabeled


def is_categorical(manifest: pd.DataFrame, task: str) -> bool:
    """Whether ``task`` is a categorical (multi-class) column: any labeled cell that is not a
    number. (Numbers are binary labels; ingest refused other numbers.)"""
    if task not in manifest.columns:
        return False
    text = manifest[task].dropna().astype(str).str.strip()
    text = text[~text.str.upper().isin(UNLABELED)]
    return bool(len(text)) and pd.to_numeric(text, errors="coerce").isna().any()


def label_column(rows: pd.DataFrame, task: str) -> str:
    """The column the labels of ``task`` are read from (``view_given`` for ``view`` once
    ``echoclr views --write-manifest`` has filled ``view`` with predictions)."""
    return "view_given" if task == "view" and "view_given" in rows.columns else task


def class_labels(rows: pd.DataFrame, task: str) -> pd.Series:
    """Each row's class name, stripped and upper-cased; '' for an unlabeled video."""
    text = rows[label_column(rows, task)].fillna("").astype(str).str.strip().str.upper()
    return text.where(~text.isin(UNLABELED), "")


def task_classes(manifest: pd.DataFrame, task: str) -> tuple[str, ...]:
    """The sorted class names of ``task`` among the labeled videos of ``manifest``."""
    return tuple(sorted(set(class_labels(manifest, task)) - {""}))


def encode(rows: pd.DataFrame, task: str, classes: tuple[str, ...]) -> pd.DataFrame:
    """``rows`` with :data:`CLASS_COLUMN`: the index of each video's class in ``classes`` (-1 for
    an unlabeled video or a class not in ``classes``)."""
    names = class_labels(rows, task).to_numpy(str)
    index = {name: k for k, name in enumerate(classes)}
    return rows.assign(**{CLASS_COLUMN: [index.get(n, -1) for n in names]})


def readout_view(task: str, view: str | None) -> str | None:
    """The view a readout of ``task`` reads: every view for ``--task view`` (it classifies them),
    else ``view``."""
    return None if task == "view" else view


def videos_per_class(rows: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, int]:
    """{class: labeled videos of ``rows``} in ``classes`` order (0 for a class without any)."""
    counts = rows.loc[rows[CLASS_COLUMN] >= 0, CLASS_COLUMN].value_counts()
    return {name: int(counts.get(k, 0)) for k, name in enumerate(classes)}


def check_classes(rows: pd.DataFrame, classes: tuple[str, ...], *, task: str, split: str,
                  source: Path, use: str, min_videos: int = 1) -> None:
    """Every class of ``classes`` has ``min_videos`` labeled videos in ``rows`` (one split).

    Raises:
        UserError: naming the split, the classes short of videos and the counts.
    """
    held = videos_per_class(rows, classes)
    short = [name for name, n in held.items() if n < min_videos]
    if short:
        listed = ", ".join(f"{name} {n}" for name, n in held.items())
        wanted = "no labeled video" if min_videos == 1 else \
            f"fewer than {min_videos} labeled videos"
        raise UserError(f"{source}: task {task!r}: the {split} split has {wanted} "
                        f"of {', '.join(short)} ({listed}), and {use} needs "
                        f"every class; label more {split} videos of {', '.join(short)} in the "
                        f"{label_column(rows, task)!r} column")


def fraction_studies(rows: pd.DataFrame, *, fraction: float, seed: int) -> list[str]:
    """The drawn ``fraction`` (at least one) of the studies of ``rows`` holding a labeled video:
    the studies shuffled once with ``seed``, the first ``round(fraction * n)`` kept (nested in
    the fraction)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction {fraction} must be in (0, 1]")
    studies = np.array(sorted(rows.loc[rows[CLASS_COLUMN] >= 0, "study_id"].astype(str).unique()))
    order = studies[np.random.default_rng(seed).permutation(len(studies))]
    return sorted(order[:max(1, int(round(fraction * len(studies))))])


def select_videos(manifest: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, *, task: str,
                  fraction: float, fraction_seed: int, source: Path, check_val: bool = True
                  ) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """The labeled training videos of the drawn studies, the labeled validation videos, and the
    task's classes (those of the whole manifest), each video's class in :data:`CLASS_COLUMN`.

    Raises:
        UserError: fewer than two classes, or a class with fewer than two training videos in
            the drawn fraction (or no validation video, with ``check_val``).
    """
    classes = task_classes(manifest, task)
    if len(classes) < 2:
        raise UserError(f"{source}: task {task!r} labels {len(classes)} class(es) "
                        f"({', '.join(classes) or 'none'}); a categorical task needs two or more")
    train, val = encode(train, task, classes), encode(val, task, classes)
    drawn = fraction_studies(train, fraction=fraction, seed=fraction_seed)
    train = train[train["study_id"].astype(str).isin(drawn) & (train[CLASS_COLUMN] >= 0)]
    check_classes(train, classes, task=task, split="train", source=source, min_videos=2,
                  use=f"training (at --fraction {fraction:g})")
    val = val[val[CLASS_COLUMN] >= 0]
    if check_val:
        check_classes(val, classes, task=task, split="val", source=source,
                      use="validation (the loss and macro AUROC that pick the best epoch)")
    return train.reset_index(drop=True), val.reset_index(drop=True), classes
