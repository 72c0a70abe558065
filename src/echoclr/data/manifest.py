"""The manifest: a CSV that lists an echo archive's videos, and the splits drawn from it.

Required columns: ``path`` (relative to the CSV's folder, or absolute) and ``study_id``.
Optional: ``patient_id`` (defaults to ``study_id``), ``view``, ``split`` (train/val/test/ext_test),
``fps``, and any number of binary label columns (0/1/blank), e.g. ``lvh``, ``severe_as``.
Splits are drawn by patient (never by video) and label fractions of training studies are
nested and stratified, as in Holste et al. 2024.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.data.problems import FILE_KIND, ManifestError, ManifestProblem, line_of

REQUIRED_COLUMNS = ("path", "study_id")
KNOWN_COLUMNS = (
    "path", "study_id", "patient_id", "view", "split", "fps",
    "source", "n_frames", "height", "width", "manifest_line", "us_regions",
    # header facts `echoclr scan` records
    "view_hint", "photometric", "transfer_syntax", "manufacturer", "device_model",
    # what `echoclr views --write-manifest` adds beside the predicted view
    "view_given", "view_confidence", "view_from",
)
SPLITS = ("train", "val", "test", "ext_test")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV with ids kept as strings; adds ``patient_id`` if absent.

    Labels stay as read (floats with NaN for blanks); validate with :func:`validate_manifest`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    id_cols = {c: str for c in ("path", "study_id", "patient_id", "view", "split", "source")}
    try:
        df = pd.read_csv(path, dtype=id_cols, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ManifestError(path, [ManifestProblem(None, None, f"not a readable CSV ({err})")])
    if "study_id" in df.columns and "patient_id" not in df.columns:
        df["patient_id"] = df["study_id"]
    return df


def label_columns(df: pd.DataFrame) -> list[str]:
    """Columns that are neither known metadata nor bookkeeping: the binary labels."""
    return [c for c in df.columns if c not in KNOWN_COLUMNS and not c.startswith("_")]


def of_view(views: pd.Series, view: str) -> np.ndarray:
    """Boolean (N,): the rows whose ``view`` cell names ``view`` — stripped, in any case, as
    archives spell them (" plax ", "PLAX"); a blank cell matches no view."""
    return (views.fillna("").astype(str).str.strip().str.casefold()
            == view.strip().casefold()).to_numpy()


def views_held(views: pd.Series, unit: str) -> str:
    """The views a ``view`` column holds with their counts, most frequent first, for a message:
    "PLAX (7 rows), (blank) (2 rows)"."""
    held = views.fillna("").astype(str).str.strip().replace("", "(blank)").value_counts()
    return ", ".join(f"{name} ({n} {unit})" for name, n in held.items())


def resolve_path(path: str, root: str | Path) -> Path:
    """A manifest path made absolute against the manifest's folder."""
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def canonical_path(path: str, root: str | Path) -> str:
    """The one spelling of a manifest path: absolute, normalised, symlinks followed (``x.avi``,
    ``./x.avi``, ``d/../x.avi`` and the absolute path are one file). Never raises."""
    return os.path.realpath(resolve_path(path, root))


def file_problem(path: str | Path) -> str | None:
    """Why a listed file cannot be read (missing, a symlink loop, not a regular file), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    except OSError as err:
        return "symlink loop" if err.errno == errno.ELOOP else f"file not readable ({err.strerror})"
    return None if stat.S_ISREG(st.st_mode) else "not a regular file"


def validate_manifest(
    df: pd.DataFrame, root: str | Path | None = None, *, check_files: bool = True,
    allowed_roots: list[str | Path] | None = None,
) -> list[ManifestProblem]:
    """Every problem of a manifest, each with the line an editor shows (header: line 1).

    Checks: required columns, blank ids, missing or unreadable files (kind ``"file"``, when
    ``check_files`` and ``root``), paths outside ``allowed_roots`` (when given), one file listed
    twice under any spelling (when ``root``; else the same string), non-binary labels, a study
    whose rows disagree on a label, a patient in two splits (leakage), unknown split names.
    """
    problems: list[ManifestProblem] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        return [ManifestProblem(None, c, "required column missing") for c in missing]
    lines = np.arange(len(df)) + line_of(0)
    for col in ("path", "study_id", "patient_id"):
        if col in df.columns:
            for r in lines[df[col].isna().to_numpy()]:
                problems.append(ManifestProblem(int(r), col, "blank", "blank"))
    keys = df["path"]
    if root is not None:
        keys = pd.Series([canonical_path(p, root) if isinstance(p, str) else None
                          for p in df["path"]], index=df.index)
        problems += _path_problems(df["path"], keys, lines, root, check_files, allowed_roots)
    first: dict[str, int] = {}
    for r, p, key in zip(lines, df["path"], keys):
        if not isinstance(p, str):
            continue
        if key in first:
            problems.append(ManifestProblem(
                int(r), "path", f"duplicate path {p} (the file of line {first[key]})",
                "duplicate path", f"{p!r} (first on line {first[key]})"))
        else:
            first[key] = int(r)
    for col in label_columns(df):
        values = pd.to_numeric(df[col], errors="coerce")
        # pandas reads true/false as booleans: text labels all the same, refused with yes/no.
        text = df[col].map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(bool)
        bad = (df[col].notna() & ~values.isin([0, 1])).to_numpy() | text
        for r, v in zip(lines[bad], df[col][bad]):
            v = str(v).lower() if isinstance(v, (bool, np.bool_)) else v
            problems.append(ManifestProblem(int(r), col, f"label {v!r} is not 0, 1 or blank",
                                            "non-binary label", repr(v)))
        per_study = values.where(~bad).groupby(df["study_id"]).nunique()
        for study in per_study.index[per_study > 1]:
            at = int(lines[(df["study_id"] == study).to_numpy()][0])
            problems.append(ManifestProblem(at, col, f"study {study} has conflicting labels"))
    if "split" in df.columns:
        bad_split = df["split"].notna() & ~df["split"].isin(SPLITS)
        for r, s in zip(lines[bad_split.to_numpy()], df["split"][bad_split]):
            problems.append(ManifestProblem(int(r), "split", f"unknown split {s!r} (use {SPLITS})",
                                            "unknown split", repr(s)))
        n_splits = df.dropna(subset=["split"]).groupby("patient_id")["split"].nunique()
        for patient in n_splits.index[n_splits > 1]:
            at = int(lines[(df["patient_id"] == patient).to_numpy()][0])
            splits = sorted(df.loc[df["patient_id"] == patient, "split"].dropna().unique())
            problems.append(ManifestProblem(
                at, "split", f"patient {patient} appears in splits {splits} (leakage)"))
    return problems


def _path_problems(paths: pd.Series, keys: pd.Series, lines: np.ndarray, root, check_files: bool,
                   allowed_roots) -> list[ManifestProblem]:
    """Rows outside the allowed roots, and rows whose file cannot be read (kind "file")."""
    roots = [os.path.realpath(a) for a in allowed_roots] if allowed_roots else None
    problems = []
    for r, p, key in zip(lines, paths, keys):
        if not isinstance(p, str):
            continue
        if roots is not None and not any(Path(key).is_relative_to(a) for a in roots):
            problems.append(ManifestProblem(int(r), "path", f"{p} is outside the allowed roots",
                                            "outside"))
        elif check_files and (why := file_problem(resolve_path(p, root))):
            problems.append(ManifestProblem(int(r), "path", f"{why}: {p}", FILE_KIND, why))
    return problems


def check_manifest(df: pd.DataFrame, source: str | Path, **kwargs) -> None:
    """Raise :class:`ManifestError` listing every problem, if any."""
    problems = validate_manifest(df, **kwargs)
    if problems:
        raise ManifestError(source, problems)


def _study_table(df: pd.DataFrame, label: str | None) -> pd.DataFrame:
    """One row per study: study_id, patient_id and (if given) the study's label."""
    cols = ["study_id", "patient_id"] + ([label] if label else [])
    return df[cols].drop_duplicates("study_id").reset_index(drop=True)


def label_fraction_studies(
    df: pd.DataFrame, *, label: str, fractions: list[float], seed: int = 0,
) -> dict[float, list[str]]:
    """Nested, stratified, seeded subsets of the labeled training studies.

    Each class's studies are shuffled once with ``seed``; the subset for fraction f takes the first
    ``max(1, round(f * n_class))`` of each class, so a smaller fraction's subset lies inside every
    larger one's and every subset has at least one positive and one negative study.

    Returns:
        {fraction: [study_id, ...]} in a deterministic order.

    Raises:
        ValueError: when the training studies lack a positive or a negative example.
    """
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"label fraction {f} must be in (0, 1]")
    train = df[df["split"] == "train"] if "split" in df.columns else df
    studies = _study_table(train, label)
    studies[label] = pd.to_numeric(studies[label], errors="coerce")
    studies = studies.dropna(subset=[label])
    rng = np.random.default_rng(seed)
    by_class = {}
    for cls in (0, 1):
        ids = studies.loc[studies[label] == cls, "study_id"].to_numpy()
        if len(ids) == 0:
            name = "positive" if cls else "negative"
            raise ValueError(
                f"label {label!r}: the training split has no {name} study, so no label fraction "
                "can hold both classes")
        by_class[cls] = list(ids[rng.permutation(len(ids))])
    subsets = {}
    for f in sorted(fractions):
        chosen = []
        for cls in (0, 1):
            k = max(1, int(round(f * len(by_class[cls]))))
            chosen += by_class[cls][:k]
        subsets[f] = sorted(chosen)
    return subsets
