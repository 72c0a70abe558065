"""Which cached videos a readout learns from: the drawn label fraction of the training studies,
and the labeled validation studies (Holste et al. 2024: validation is used whole, even at 1 %).

Before anything is trained, every split a command uses is checked: the label column exists, the
view matches videos, and the split holds studies of both classes.
"""

from __future__ import annotations

import difflib
import hashlib

import pandas as pd

from echoclr.data.cache import VideoCache
from echoclr.data.categorical import (
    fraction_studies,
    is_categorical,
    readout_view,
    select_videos,
)
from echoclr.data.manifest import label_columns, label_fraction_studies, views_held
from echoclr.data.splits import class_counts
from echoclr.errors import UserError


def check_task(cache: VideoCache, task: str) -> None:
    """``task`` is a label column of the cache's manifest.

    Raises:
        UserError: naming the manifest, its label columns and the closest spelling.
    """
    if task in cache.manifest.columns:
        return
    where = cache.root / "manifest.csv"
    columns = label_columns(cache.manifest) + [  # a categorical task is a task too
        c for c in ("view",) if is_categorical(cache.manifest, c)]
    if not columns:
        raise UserError(f"{where}: no label column, so there is no --task {task} to learn; add a "
                        "binary (0/1, blank: unknown) column such as lvh to the manifest and "
                        "ingest it again")
    close = [c for c in columns if c.casefold() == task.casefold()] or \
        difflib.get_close_matches(task, columns, n=1)
    hint = f"; did you mean --task {close[0]}?" if close else ""
    raise UserError(f"{where}: no label column {task!r} (label columns: "
                    f"{', '.join(columns)}){hint}")


def check_view(cache: VideoCache, view: str | None) -> None:
    """``view`` (None: every view) matches at least one video of the cache.

    Raises:
        UserError: naming the views the cache holds, with their video counts.
    """
    if view is None or "view" not in cache.manifest.columns or not cache.rows(view=view).empty:
        return
    raise UserError(f"{cache.root / 'manifest.csv'}: no video of view {view!r}; the cache "
                    f"holds {views_held(cache.manifest['view'], 'videos')}: pass --view with one "
                    "of them (in any case), or --view all")


def check_split(cache: VideoCache, split: str) -> None:
    """``split`` is a split of the cache's manifest.

    Raises:
        UserError: naming the splits the manifest holds.
    """
    splits = sorted(cache.manifest["split"].dropna().unique())
    if split not in splits:
        raise UserError(f"--split {split}: {cache.root / 'manifest.csv'} has no such split "
                        f"(splits: {', '.join(splits)})")


def check_both_classes(rows: pd.DataFrame, *, task: str, split: str, source, use: str) -> None:
    """The labeled studies of ``rows`` (one split) hold both classes of ``task``.

    Args:
        source: the cache (or file) the rows come from, named in the message.
        use: what needs both classes (e.g. "fine-tuning"), named in the message.

    Raises:
        UserError: saying which split lacks which class, and what to do.
    """
    n_pos, n_neg = class_counts(rows.assign(split=split), task)[split]
    missing = " and no ".join(name for name, n in (("positive", n_pos), ("negative", n_neg))
                              if n == 0)
    if missing:
        raise UserError(
            f"{source}: label {task!r}: the {split} split has no {missing} study ({n_pos} "
            f"positive, {n_neg} negative labeled studies), and {use} needs both classes; give "
            f"the {split} split labeled studies of both classes (ingest draws such splits with "
            f"--stratify {task}), or choose another --task")


def select_rows(cache: VideoCache, *, task: str, fraction: float, fraction_seed: int,
                view: str | None, val_fraction: float = 1.0, check_val: bool = True
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training videos of the drawn label fraction, and the labeled validation videos.

    The training subset is :func:`~echoclr.data.manifest.label_fraction_studies` (nested,
    stratified, seeded by ``fraction_seed``): the same studies for every init at one draw.

    Raises:
        UserError: an unknown task or view, or a split without both classes (validation only
            with ``check_val``), before anything is trained.
    """
    check_task(cache, task)
    check_view(cache, view)
    manifest = cache.root / "manifest.csv"
    train = cache.rows("train", view)
    check_both_classes(train, task=task, split="train", source=manifest, use="training")
    subsets = label_fraction_studies(train, label=task, fractions=[fraction], seed=fraction_seed)
    train = train[train["study_id"].isin(subsets[fraction])]
    val = cache.rows("val", view)
    val = val[val[task].notna()]
    if check_val:
        check_both_classes(val, task=task, split="val", source=manifest,
                           use="validation (the loss and AUROC that pick the best epoch)")
    if val_fraction < 1:
        val_studies = label_fraction_studies(val.assign(split="train"), label=task,
                                             fractions=[val_fraction], seed=fraction_seed)
        val = val[val["study_id"].isin(val_studies[val_fraction])]
    if val.empty:
        raise UserError(f"{manifest}: no labeled validation videos for {task!r}: give some "
                        "studies split val")
    return train.reset_index(drop=True), val.reset_index(drop=True)


def select_task_rows(cache: VideoCache, *, task: str, fraction: float, fraction_seed: int,
                     view: str | None, val_fraction: float = 1.0, check_val: bool = True
                     ) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...] | None]:
    """:func:`select_rows` for a binary task (classes None); for a categorical task
    (:mod:`echoclr.data.categorical`) the labeled videos of the drawn training studies and the
    labeled validation videos, with the task's classes. ``--task view`` classifies every
    video, so the view filter does not apply to it.

    Raises:
        UserError: as :func:`select_rows`, or a class without videos in a split it needs.
    """
    if not is_categorical(cache.manifest, task):
        return (*select_rows(cache, task=task, fraction=fraction, fraction_seed=fraction_seed,
                             view=view, val_fraction=val_fraction, check_val=check_val), None)
    view = readout_view(task, view)
    check_view(cache, view)
    train, val, classes = select_videos(
        cache.manifest, cache.rows("train", view), cache.rows("val", view), task=task,
        fraction=fraction, fraction_seed=fraction_seed, source=cache.root / "manifest.csv",
        check_val=check_val)
    if val_fraction < 1:
        val = val[val["study_id"].astype(str).isin(
            fraction_studies(val, fraction=val_fraction, seed=fraction_seed))]
    if val.empty and check_val:
        raise UserError(f"{cache.root / 'manifest.csv'}: no labeled validation videos for "
                        f"{task!r}: label some videos of the val split")
    return train, val.reset_index(drop=True), classes


def studies_fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) of the sorted study ids of ``rows``: equal for runs that learned
    from the same labeled studies (written to each run's config.json)."""
    ids = "\n".join(sorted(rows["study_id"].astype(str).unique()))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]
