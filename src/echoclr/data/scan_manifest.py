"""The manifest a scan writes: one row per cine, grouped by study (pseudonymous ``study_id``,
``patient_id``), header facts as columns, label columns joined from a table keyed by accession
number, study UID or patient ID — the key matched on its keyed hash in memory and never
written — and the report of every file that is no cine, with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from echoclr.data.dicom import hash_identifier
from echoclr.data.problems import line_of, list_lines
from echoclr.data.pseudonyms import PSEUDONYMOUS
from echoclr.errors import UserError

KEYS = {"accession": "accession", "study_uid": "study", "patient_id": "patient"}
FACTS = ("n_frames", "fps", "height", "width", "photometric", "transfer_syntax", "manufacturer",
         "device_model", "us_regions", "view_hint")


def read_labels(path: str | Path, key: str, salt: str) -> pd.DataFrame:
    """The label table indexed by the keyed hash of its ``key`` column (the raw key dropped).

    Raises:
        UserError: an unknown key, no such column, blank or repeated keys (naming the lines).
    """
    if key not in KEYS:
        raise UserError(f"--key {key}: choose one of {', '.join(KEYS)}")
    try:
        table = pd.read_csv(path, dtype={key: str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({err})") from err
    if key not in table.columns:
        raise UserError(f"{path}: no column {key!r} to join by (--key {key}); its columns are "
                        f"{list(table.columns)}")
    clash = [c for c in table.columns if c in ("path", "study_id", "patient_id", *FACTS)]
    if clash:
        raise UserError(f"{path}: columns {clash} are the manifest's own; rename them")
    hashed = table.pop(key).map(lambda v: hash_identifier(v, salt))
    for problem, rows in (("blank", hashed.isna()), ("repeated", hashed.duplicated() &
                                                     hashed.notna())):
        if rows.any():
            lines = [line_of(i) for i in table.index[rows]]
            raise UserError(f"{path}: {int(rows.sum())} {problem} {key} keys, {list_lines(lines)}; "
                            "give each key one row")
    table.index = hashed.to_numpy()
    return table


def build_manifest(results: list[tuple[str, dict]], *, root: Path, manifest_dir: Path,
                   labels: pd.DataFrame | None, key: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The manifest and the report from ``results`` ((path below ``root``, scan record)).

    Returns:
        the manifest (paths relative to ``manifest_dir``; sorted by study, then path), the report
        (``path``, ``reason``) and how many label rows matched no cine.
    """
    def where(rel: str) -> str:
        return os.path.relpath(root / rel, manifest_dir)

    cines = [(where(rel), r) for rel, r in results if "skip" not in r]
    report = pd.DataFrame([(where(rel), r["skip"]) for rel, r in results if "skip" in r],
                          columns=["path", "reason"])
    df = pd.DataFrame({"path": [p for p, _ in cines],
                       "study_id": [r["study"] for _, r in cines],
                       "patient_id": [r["patient"] or r["study"] for _, r in cines],
                       **{fact: [r[fact] for _, r in cines] for fact in FACTS},
                       PSEUDONYMOUS: 1})
    unmatched = 0
    if labels is not None:
        join = pd.Series([r[KEYS[key]] for _, r in cines], dtype=object)
        joined = labels.reindex(join.to_numpy()).reset_index(drop=True)
        df = pd.concat([df, joined.set_axis(df.index)], axis=1)
        unmatched = int((~labels.index.isin(set(join.dropna()))).sum())
    return df.sort_values(["study_id", "path"], kind="stable").reset_index(drop=True), report, \
        unmatched
