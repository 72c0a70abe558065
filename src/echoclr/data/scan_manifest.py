"""The manifest a scan writes: one row per cine, grouped by study (pseudonymous ``study_id``,
``patient_id``), header facts as columns, label columns joined from a table keyed by accession
number, study UID or patient ID — the key matched on its keyed hash in memory and never
written — and the report of every file that is no cine, with its reason. Rows are formatted
a chunk at a time and streamed into the CSV, so memory does not grow with the manifest.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from echoclr.atomic import atomic_path
from echoclr.data.dicom import hash_identifier
from echoclr.data.problems import line_of, list_lines
from echoclr.data.pseudonyms import PSEUDONYMOUS
from echoclr.errors import UserError

KEYS = {"accession": "accession", "study_uid": "study", "patient_id": "patient"}
FACTS = ("n_frames", "fps", "height", "width", "photometric", "transfer_syntax", "manufacturer",
         "device_model", "us_regions", "view_hint")
CHUNK = 500  # manifest rows formatted at a time: memory bounded by a chunk (≈ 3 MiB at 500)


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


def match_labels(labels: pd.DataFrame, keys: Iterable[str | None]) -> tuple[int, bool]:
    """How many label rows match no cine, and whether some cine matches no label row, given
    the distinct join keys of the cines (memory: the label rows)."""
    index, matched, cine_unmatched = set(labels.index), set(), False
    for key in keys:
        if key in index:
            matched.add(key)
        else:
            cine_unmatched = True
    return len(index - matched), cine_unmatched


def manifest_rows(cines: list[tuple[str, dict]], *, root: Path, manifest_dir: Path,
                  labels: pd.DataFrame | None, key: str, cine_unmatched: bool = False
                  ) -> pd.DataFrame:
    """Manifest rows of ``cines`` ((path below ``root``, scan record), in manifest order): paths
    relative to ``manifest_dir``, the pseudonymous ids, the header facts, the joined labels.

    ``cine_unmatched``: some cine of the whole manifest matches no label row, so every chunk
    gets the dtypes a missing label gives (integers as floats), as one whole table would.
    """
    df = pd.DataFrame({"path": [os.path.relpath(os.path.join(root, rel), manifest_dir)
                                for rel, _ in cines],
                       "study_id": [r["study"] for _, r in cines],
                       "patient_id": [r["patient"] or r["study"] for _, r in cines],
                       **{fact: [r[fact] for _, r in cines] for fact in FACTS},
                       PSEUDONYMOUS: 1})
    if labels is None:
        return df
    join = [r[KEYS[key]] for _, r in cines]
    joined = labels.reindex(pd.Index(join, dtype=object)).reset_index(drop=True)
    if cine_unmatched:
        joined = joined.astype(labels.reindex(pd.Index([None], dtype=object)).dtypes)
    return pd.concat([df, joined.set_axis(df.index)], axis=1)


def write_csv_chunks(path: Path, frames: Iterable[pd.DataFrame], empty: pd.DataFrame) -> int:
    """Write ``frames`` one after another as one CSV (atomically: a reader sees the old file or
    the whole new one); ``empty`` gives the header when there are no frames. Returns the rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        for frame in frames:
            frame.to_csv(f, header=n == 0, index=False)
            n += len(frame)
        if n == 0:
            empty.to_csv(f, index=False)
    return n


def chunks(rows: Iterable, size: int = CHUNK) -> Iterator[list]:
    """``rows`` in lists of ``size`` (the last one shorter)."""
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk
