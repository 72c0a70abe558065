"""Pseudonyms for the identifiers a manifest carries (MRNs as ``patient_id``, accession numbers
as ``study_id``): a keyed hash (HMAC-SHA256 with the ingest salt, the same function that hashes
DICOM identifiers), stable for one salt; the link back exists only in an id map the user asks
for, written where no cache or run folder is.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from echoclr.atomic import atomic_write_text
from echoclr.data.dicom import hash_identifier
from echoclr.errors import UserError

ID_COLUMNS = ("study_id", "patient_id")
PSEUDONYMOUS = "_pseudonymous"  # a manifest column: 1 on rows whose ids are pseudonyms already
# Files that mark a cache or a run folder: an id map is never written inside one.
FOLDER_MARKS = ("ingest_config.json", "config.json", "model.json", "encoder.json", "log.jsonl")


def pseudonymise(df: pd.DataFrame, salt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace ``study_id`` and ``patient_id`` by their keyed hashes (rows marked
    ``_pseudonymous`` keep theirs, e.g. from ``echoclr scan``).

    Returns:
        the manifest with pseudonyms (without ``_pseudonymous``), and the map (``column``,
        ``pseudonym``, ``original``), one row per distinct original, for :func:`write_id_map`.
    """
    out = df.copy()
    keep = (pd.to_numeric(out[PSEUDONYMOUS], errors="coerce") == 1).to_numpy() \
        if PSEUDONYMOUS in out.columns else None
    pairs = []
    for column in ID_COLUMNS:
        if column not in out.columns:
            continue
        original = out[column]
        hashed = original.map(lambda v: hash_identifier(v, salt))
        if keep is not None:
            hashed = hashed.where(~keep, original)
        out[column] = hashed
        changed = original.notna() if keep is None else original.notna() & ~keep
        pairs.append(pd.DataFrame({"column": column, "pseudonym": hashed[changed],
                                   "original": original[changed]}))
    id_map = pd.concat(pairs, ignore_index=True).drop_duplicates() if pairs else pd.DataFrame()
    return out.drop(columns=[PSEUDONYMOUS], errors="ignore"), id_map


def check_private_location(path: str | Path, *, not_under: list[str | Path]) -> Path:
    """Refuse an id-map location inside any of ``not_under`` (the cache), or inside a folder
    that is a cache or a run folder (it holds one of ``FOLDER_MARKS``), at any depth.

    Raises:
        UserError: naming the file, the folder and the fix.
    """
    target = Path(path).resolve()
    for folder in not_under:
        if target.is_relative_to(Path(folder).resolve()):
            raise UserError(f"--id-map {path}: inside {folder}, which is shared with whoever "
                            "gets the cache; write the id map to a private folder elsewhere")
    for folder in target.parents:
        marks = [m for m in FOLDER_MARKS if (folder / m).is_file()]
        if marks:
            raise UserError(f"--id-map {path}: {folder} is a cache or run folder (it holds "
                            f"{marks[0]}); write the id map to a private folder elsewhere")
    return target


def write_id_map(path: str | Path, id_map: pd.DataFrame) -> None:
    """Write the private pseudonym → original map (CSV, atomically)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), id_map.to_csv(index=False))
