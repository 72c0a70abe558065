"""Which rows of a manifest an ingest decodes, decided before any pixel is: the manifest
validated (a problem stops everything, a missing or unreadable file is skipped), filtered by
view, each file identified by its content (a copy listed twice is cached once; a copy in another
split is leakage), and splits drawn for the rows without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from echoclr.data.identity import FileIdentity, file_identity, same_content
from echoclr.data.manifest import (
    label_columns,
    of_view,
    read_manifest,
    resolve_path,
    validate_manifest,
    views_held,
)
from echoclr.data.problems import FILE_KIND, ManifestError, ManifestProblem, line_of
from echoclr.data.splits import assign_splits, one_class_splits


@dataclass(frozen=True)
class Skipped:
    """A manifest row left out of the cache: its line, its path (kept in memory; written only
    when asked), why, and a ``kind`` that groups repeats in a summary."""

    line: int
    path: str
    reason: str
    kind: str = ""


@dataclass
class Plan:
    """The rows to decode (``_line`` column: the manifest's line), each one's file identity
    (by line), the rows skipped so far, and the sentences about one-class splits."""

    rows: pd.DataFrame
    identities: dict[int, FileIdentity]
    skipped: list[Skipped] = field(default_factory=list)
    one_class: list[str] = field(default_factory=list)


def plan_ingest(manifest: str | Path, *, view: str | None, allowed_roots: list | None,
                stratify: str | None, seed: int, fractions: tuple[float, float, float]) -> Plan:
    """Validate, filter, identify and split a manifest (see the module docstring).

    Args:
        stratify: label columns joined by commas; None: every label column.
        allowed_roots: folders the files may lie in; None: anywhere.

    Raises:
        ManifestError: a problem other than a missing/unreadable file, or a copy in two splits.
    """
    df = read_manifest(manifest)
    root = Path(manifest).parent
    problems = validate_manifest(df, root, allowed_roots=allowed_roots)
    fatal = [p for p in problems if p.kind != FILE_KIND]
    if any(p.kind == "outside" for p in fatal):
        fatal.append(ManifestProblem(None, "path", f"allowed roots: {list(map(str, allowed_roots))}"))
    if fatal:
        raise ManifestError(manifest, fatal)
    df = df.assign(_line=[line_of(i) for i in range(len(df))])
    if view is not None:
        if "view" not in df.columns:
            raise ManifestError(manifest, [ManifestProblem(
                None, "view", f"view={view!r} given but no view column")])
        wanted = of_view(df["view"], view)
        if not wanted.any():
            raise ManifestError(manifest, [ManifestProblem(
                None, "view", f"no row of view {view!r}; the manifest holds "
                f"{views_held(df['view'], 'rows')}: pass --view with one of them (in any case), "
                "or --view all")])
        df = df[wanted]
    unreadable = {p.line: p.value for p in problems if p.kind == FILE_KIND}
    identities = {}
    for line, path in zip(df["_line"], df["path"], strict=True):
        if line not in unreadable:
            try:
                identities[line] = file_identity(resolve_path(path, root))
            except OSError as err:
                unreadable[line] = f"file not readable ({err.strerror})"
    copies = same_content(identities)
    _refuse_copies_across_splits(manifest, df, copies)
    paths = dict(zip(df["_line"], df["path"], strict=True))
    skipped = [Skipped(line, paths[line], why) for line, why in sorted(unreadable.items())
               if line in paths]
    skipped += [Skipped(line, paths[line], f"same content as line {first}", "same content")
                for line, first in sorted(copies.items())]
    rows = df[~df["_line"].isin([s.line for s in skipped])].reset_index(drop=True)
    drawing = "split" not in rows.columns or rows["split"].isna().any()
    labels = label_columns(rows)
    rows = assign_splits(rows, stratify=",".join(labels) if stratify is None else stratify,
                         seed=seed, fractions=fractions)
    return Plan(rows, identities, skipped, one_class_splits(rows, labels) if drawing else [])


def _refuse_copies_across_splits(manifest, df: pd.DataFrame, copies: dict[int, int]) -> None:
    """The same content in two given splits is leakage: raise naming both lines."""
    if "split" not in df.columns:
        return
    split = dict(zip(df["_line"], df["split"], strict=True))
    leaks = [ManifestProblem(line, "path", f"same content as line {first}, in split "
                             f"{split[first]!r} while this row is in {split[line]!r} (leakage)",
                             "same content")
             for line, first in sorted(copies.items())
             if isinstance(split[line], str) and isinstance(split[first], str)
             and split[line] != split[first]]
    if leaks:
        raise ManifestError(manifest, leaks)
