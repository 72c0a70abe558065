"""``echoclr scan DICOM_ROOT --out manifest.csv``: a manifest from a PACS export, by reading
DICOM headers only: cines grouped by study with pseudonymous ids, their header facts, label
columns joined from a table; every other file in ``scan_report.csv`` beside it with its reason.
Parallel, resumable (unchanged files are not read again, and a killed scan loses at most one
batch of results). Memory is flat in the number of files: the walk streams into an SQLite scan
state and the CSVs stream out of it, a chunk of rows at a time — peak RSS 128.6 MiB for 1,000
files, 130.3 MiB for 20,000, 130.2 MiB for 10^5 (it grew ≈ 4 KiB per file before: 135, 209 and
485 MiB; ``benchmarks/bench_scan.py --link hard``). ``--id-map`` keeps every study's and
patient's ids.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from echoclr.data.pseudonyms import check_private_location, write_id_map
from echoclr.data.scan import count_files, scan_file, walk_files
from echoclr.data.scan_manifest import (
    KEYS,
    chunks,
    manifest_rows,
    match_labels,
    read_labels,
    write_csv_chunks,
)
from echoclr.data.scan_state import ScanState
from echoclr.errors import UserError
from echoclr.options import opt, required
from echoclr.workers import run_jobs

STATE_SUFFIX = ".scan.sqlite"  # the scan state beside the manifest: manifest.csv.scan.sqlite


@dataclass(frozen=True)
class ScanConfig:
    """Settings of one scan; the salt is never written out."""

    root: str = required("The PACS export (DICOM_ROOT) to walk; only headers are read.")
    out: str = opt("manifest.csv", "The manifest CSV to write; scan_report.csv goes beside it.")
    labels: str | None = opt(None, "CSV of label columns and a key column (named as --key) to "
                                   "join; the key is matched in memory and never written.")
    key: str = opt("accession", "What the labels' key column holds: accession "
                                "(AccessionNumber), study_uid or patient_id.")
    salt: str = opt("", "Secret key of the pseudonyms (give ingest the same); never written.")
    workers: int = opt(1, "Header-reading processes; 1 reads in this process.")
    id_map: str | None = opt(None, "Write the private pseudonym-to-original id map to this CSV "
                                   "(never inside a cache or a run folder); None: no map.")


@dataclass
class ScanResult:
    """What a scan found; ``str`` is the summary the CLI prints."""

    manifest: Path
    report: Path
    n_files: int
    n_reused: int
    n_cines: int
    n_studies: int
    n_patients: int
    skipped: dict[str, int]  # reason → files
    unmatched_labels: int | None = None

    def __str__(self) -> str:
        lines = [f"scanned {self.n_files} files ({self.n_reused} unchanged since an earlier "
                 f"scan): {self.n_cines} cines of {self.n_studies} studies, {self.n_patients} "
                 f"patients → {self.manifest}"]
        if self.skipped:
            lines.append(f"skipped {sum(self.skipped.values())} files (see {self.report}):")
            lines += [f"  {n:,} {reason}" for reason, n in sorted(
                self.skipped.items(), key=lambda item: -item[1])]
        if self.unmatched_labels:
            lines.append(f"{self.unmatched_labels} label rows matched no scanned cine")
        return "\n".join(lines)


def scan(cfg: ScanConfig) -> ScanResult:
    """Walk ``cfg.root``, read each new or changed file's header, write the manifest and the
    report. The walk streams into the scan state and the CSVs stream out of it, so memory does
    not grow with the files; only ``--id-map`` keeps the ids of every study and patient.

    Raises:
        UserError: the root is no folder; the labels cannot be joined; the id map would go
            inside a cache or a run folder.
    """
    root, out = Path(cfg.root), Path(cfg.out)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; give the folder of the PACS export")
    labels = read_labels(cfg.labels, cfg.key, cfg.salt) if cfg.labels else None
    if cfg.key not in KEYS:
        raise UserError(f"--key {cfg.key}: choose one of {', '.join(KEYS)}")
    if cfg.id_map:
        check_private_location(cfg.id_map, not_under=[])
    ids: dict[str, str] = {}  # pseudonym → original, for the id map only
    tally = {"files": 0, "reused": 0}
    with ScanState(out.with_name(out.name + STATE_SUFFIX), cfg.salt) as state, \
            tqdm(total=count_files(root), desc="scan", unit="file", disable=None) as bar:
        jobs = _jobs(state, root, cfg, tally, bar)
        for (key, seq), result in run_jobs(scan_file, jobs, cfg.workers, desc="scan",
                                           unit="file", died=_died, bar=bar):
            _remember_ids(ids, result)
            state.put(key, seq, result)
        state.finish()
        unmatched = _write_outputs(state, cfg, root, out, labels)
        counts = state.counts()
        if cfg.id_map:
            _write_ids(cfg, ids, state, root)
    if not cfg.salt:
        warnings.warn("scan: no --salt given, so the pseudonyms of study UIDs and patient IDs "
                      "are unkeyed hashes anyone can recompute from guessed IDs; pass --salt "
                      "SECRET (and the same to ingest)", stacklevel=2)
    return ScanResult(out, out.with_name("scan_report.csv"), tally["files"], tally["reused"],
                      counts["cines"], counts["studies"], counts["patients"], counts["skipped"],
                      unmatched)


def _jobs(state: ScanState, root: Path, cfg: ScanConfig, tally: dict, bar) -> Iterator:
    """The header reads the walk needs, as ((key, seq), kwargs) jobs, consumed as workers free
    up; files whose state is current are only stamped, unstat-able ones recorded (both advance
    the bar here; a read advances it when its result comes)."""
    for seq, key in enumerate(walk_files(root)):
        tally["files"] += 1
        if key[1] < 0:
            state.put(key, seq, {"skip": "unreadable (the file cannot be stat'ed)"})
            bar.update()
        elif state.met(key, seq):
            tally["reused"] += 1
            bar.update()
        else:
            yield (key, seq), {"path": os.path.join(root, key[0]), "salt": cfg.salt,
                               "with_ids": bool(cfg.id_map)}


def _write_outputs(state: ScanState, cfg: ScanConfig, root: Path, out: Path,
                   labels: pd.DataFrame | None) -> int | None:
    """The manifest and scan_report.csv, streamed from the state; the label rows that matched
    no cine (None without labels)."""
    unmatched, cine_unmatched = (None, False) if labels is None else \
        match_labels(labels, state.keys(KEYS[cfg.key]))
    where = {"root": root, "manifest_dir": out.parent, "labels": labels, "key": cfg.key}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv_chunks(out, (manifest_rows(c, **where, cine_unmatched=cine_unmatched)
                           for c in chunks(state.cines())), manifest_rows([], **where))
    write_csv_chunks(out.with_name("scan_report.csv"),
                     (_report_rows(c, root, out.parent) for c in chunks(state.skipped())),
                     _report_rows([], root, out.parent))
    return unmatched


def _report_rows(skipped: list[tuple[str, str]], root: Path, manifest_dir: Path) -> pd.DataFrame:
    """scan_report.csv rows: (path relative to the manifest's folder, reason)."""
    return pd.DataFrame([(os.path.relpath(os.path.join(root, rel), manifest_dir), reason)
                         for rel, reason in skipped], columns=["path", "reason"])


def _died(how: str) -> dict:
    return {"skip": f"worker died ({how}) while reading the header"}


def _remember_ids(ids: dict[str, str], result: dict) -> None:
    if "ids" in result:
        ids[result["study"]] = result["ids"]["study"]
        if result["patient"]:
            ids[result["patient"]] = result["ids"]["patient"]


def _write_ids(cfg: ScanConfig, ids: dict[str, str], state: ScanState, root: Path) -> None:
    """The id map of every cine; headers read in an earlier scan are read again for it."""
    for rel, record in state.cines():
        if record["study"] not in ids:
            _remember_ids(ids, scan_file(os.path.join(root, rel), cfg.salt, with_ids=True))
    studies = set(state.keys("study"))
    write_id_map(cfg.id_map, pd.DataFrame(
        [("study_id" if p in studies else "patient_id", p, o) for p, o in sorted(ids.items())],
        columns=["column", "pseudonym", "original"]))
