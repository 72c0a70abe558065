"""Files/s and peak memory (RSS) of ``echoclr scan`` on a generated PACS-like export, by size.

    PYTHONPATH=src python benchmarks/bench_scan.py [--files 1000 4000] [--workers 1 2]
        [--per-study 20] [--link copy]

``--files 1000 100000`` is the full check that memory stays flat in the number of files
(≈ 22 GB of copies; ``--link hard`` needs almost no disk, but its files share inodes, hence
pages, so its files/s flatters a real archive).

The tree is PATIENT/STUDY/SERIES/IMAGE.dcm. Cines are pydicom's real ultrasound cine
``examples_ybr_color.dcm`` (30 frames, JPEG baseline YBR_FULL_422): it is read and saved once
with fixed-length placeholder UIDs, then each study patches in its own StudyInstanceUID,
PatientID and AccessionNumber, each series its SeriesInstanceUID and each file its
SOPInstanceUID as plain byte replacements (same length, so every file stays a valid DICOM) —
pydicom runs once, not 10^5 times. About 5 % of the files are no cine (copies of the
single-frame still ``examples_rgb_color.dcm`` and the structured report ``test-SR.dcm``) and one
is corrupt (a DICM preamble over random bytes), so the report path is exercised too.

Each scan is the real ``python -m echoclr scan ROOT --out M.csv --workers N`` in a subprocess,
forked by a tiny go-between that reaps it with ``os.wait4``: its ``ru_maxrss`` is the peak RSS
of the largest single process of that run (the scan or one of its header-reading workers; not
their sum), a fresh figure per run. Wall time includes interpreter start and imports. The
files were just written, so their headers are mostly in the page cache (a warm, not a
cold-disk, figure). A second scan of the same tree and manifest (resume: every file unchanged,
no header read) is timed too. The manifest must list exactly the generated cines, the report
every other file, else this exits 1; a scan still running after ``--timeout`` seconds is
killed (with its workers), shown as HUNG in the table, and this exits 1 after the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.data import get_testdata_file

from _bench import run_with_peak_rss  # benchmarks/_bench.py
from echoclr.runs import machine_description

# Placeholders of fixed length; "2.25.1" + 37 digits is a valid UID (no leading zero). A
# replacement of the same length keeps every element length and so the file valid.
UID_DIGITS = 37
PH = {"study": "2.25.1" + "7" * UID_DIGITS, "series": "2.25.1" + "8" * UID_DIGITS,
      "sop": "2.25.1" + "9" * UID_DIGITS, "patient": "PATIENTPLACEHOLD",  # LO, SH: 16 chars
      "accession": "ACCPLACEHOLD0000"}
COUNTS = {"study": 1, "series": 1, "sop": 2, "patient": 1, "accession": 1}  # SOP: meta + dataset

def cine_template() -> bytes:
    """examples_ybr_color.dcm saved with the placeholders as its identifiers."""
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = PH["study"], PH["series"]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = PH["sop"]
    ds.PatientID, ds.AccessionNumber = PH["patient"], PH["accession"]
    buf = BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    for key, n in COUNTS.items():  # each placeholder exactly where we mean to patch it
        assert data.count(PH[key].encode()) == n, (key, data.count(PH[key].encode()))
    return data


def make_tree(root: Path, n_files: int, *, per_study: int, per_series: int = 5,
              studies_per_patient: int = 2, link: str = "copy", seed: int = 0) -> dict:
    """Write ``n_files`` files below ``root``; returns how many of each kind."""
    rng = np.random.default_rng(seed)
    template = cine_template()
    others = {"still": Path(get_testdata_file("examples_rgb_color.dcm")),
              "sr": Path(get_testdata_file("test-SR.dcm"))}
    counts = {"cine": 0, "still": 0, "sr": 0, "corrupt": 0}
    serial = 0
    study_bytes = series_bytes = first = None
    for i in range(n_files):
        study, j = divmod(i, per_study)
        patient = study // studies_per_patient
        folder = root / f"P{patient:06d}" / f"ST{study % studies_per_patient:02d}" / \
            f"SE{j // per_series:02d}"
        if j % per_series == 0:
            folder.mkdir(parents=True, exist_ok=True)
        if j == 0:  # a study's identity: new study UID, patient ID, accession number
            study_bytes = template.replace(PH["study"].encode(), uid(3, study)).replace(
                PH["patient"].encode(), f"PID{patient:013d}".encode()).replace(
                PH["accession"].encode(), f"ACC{study:013d}".encode())
            first = None
        if j % per_series == 0:
            series_bytes = study_bytes.replace(PH["series"].encode(), uid(4, i))
        path = folder / f"IM{j % per_series:03d}.dcm"
        if i == n_files - 1:  # one corrupt file: a DICOM preamble over garbage
            path.write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(2000))
            counts["corrupt"] += 1
            continue
        kind = rng.choice(["still", "sr", "cine"], p=[0.025, 0.025, 0.95])
        counts[kind] += 1
        if kind != "cine":  # the scanner skips these before their identity matters
            shutil.copyfile(others[kind], path)
        elif link == "hard" and first is not None:  # shares the study's first cine's inode
            os.link(first, path)
        else:
            serial += 1
            path.write_bytes(series_bytes.replace(PH["sop"].encode(), uid(5, serial)))
            first = first or path
    return counts


def uid(kind: int, n: int) -> bytes:
    """A unique UID as long as the placeholders: 2.25.<kind><n, zero-padded>."""
    return f"2.25.{kind}{n:0{UID_DIGITS}d}".encode()


def run_scan(root: Path, out: Path, workers: int, timeout: float) -> dict:
    """``python -m echoclr scan`` in a subprocess: wall seconds and its peak RSS (MiB), or
    ``error``: a run past ``timeout`` (a hang) is killed with its workers."""
    cmd = [sys.executable, "-m", "echoclr", "scan", str(root), "--out", str(out),
           "--workers", str(workers), "--salt", "bench"]
    out.parent.mkdir(parents=True, exist_ok=True)
    run = run_with_peak_rss(cmd, out.with_suffix(".log"), timeout)
    if isinstance(run["rc"], str):  # hung, killed with its workers
        state = out.with_name(out.name + ".scan.sqlite")
        done = 0
        if state.is_file():  # committed rows: what a resumed scan would not read again
            with sqlite3.connect(state) as db:
                done = db.execute("SELECT count(*) FROM files").fetchone()[0]
        return {"error": f"HUNG > {timeout:.0f} s ({done} files done)"}
    if run["rc"]:
        sys.exit(f"{' '.join(cmd)} failed ({run['rc']}):\n{run['log']}")
    return {"wall": run["wall"], "rss": run["rss"], "summary": run["log"].strip().splitlines()}


def cells(run: dict, n: int) -> str:
    """A run's seconds, files/s and peak RSS MiB as table cells, or its error."""
    if "error" in run:
        return f"{run['error']:>30}"
    return f"{run['wall']:8.2f} {n / run['wall']:8.0f} {run['rss']:12.1f}"


def check(out: Path, counts: dict) -> pd.Series:
    """The manifest lists every cine, the report every other file; exit 1 otherwise."""
    manifest = pd.read_csv(out)
    report = pd.read_csv(out.with_name("scan_report.csv"))
    n_other = counts["still"] + counts["sr"] + counts["corrupt"]
    if len(manifest) != counts["cine"] or len(report) != n_other:
        sys.exit(f"{out}: {len(manifest)} manifest rows for {counts['cine']} generated cines, "
                 f"{len(report)} report rows for {n_other} other files")
    if manifest["study_id"].nunique() < 2 and counts["cine"] > 1:
        sys.exit(f"{out}: the studies were not told apart")
    return report["reason"].str.slice(0, 60).value_counts()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, nargs="+", default=[1000, 4000], help="tree sizes")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="scan --workers")
    p.add_argument("--per-study", type=int, default=20, help="files per study")
    p.add_argument("--link", choices=["copy", "hard"], default="copy",
                   help="cines as copies, or hard links to the study's first cine")
    p.add_argument("--tmp", default=None, help="folder for the trees (default: system temp)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a scan is hung")
    args = p.parse_args()
    rows, reasons = [], None
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in sorted(set(args.files)):
            root = Path(tmp) / f"tree_{n}"
            tic = time.perf_counter()
            counts = make_tree(root, n, per_study=args.per_study, link=args.link)
            disk = f"{sum(f.stat().st_size for f in root.rglob('*.dcm')) / 2**30:.2f} GiB" \
                if args.link == "copy" else "cines hard-linked per study"
            print(f"tree of {n} files ({counts}; {disk}) written in "
                  f"{time.perf_counter() - tic:.1f} s")
            for w in args.workers:
                out = Path(tmp) / f"scan_{n}_{w}" / "manifest.csv"
                first = run_scan(root, out, w, args.timeout)
                if "error" in first:  # report it with the rest, then exit 1
                    rows.append((n, w, first, {"error": "not run"}))
                    continue
                found = check(out, counts)
                reasons = found if reasons is None else reasons
                again = run_scan(root, out, w, args.timeout)  # resume: same tree and state
                if "error" not in again:
                    check(out, counts)
                    if not any(f"({n} unchanged" in line for line in again["summary"]):
                        sys.exit(f"resume read files again: {again['summary']}")
                rows.append((n, w, first, again))
            shutil.rmtree(root)  # free the disk before the next, larger tree
    print(f"\necho scan, {args.per_study} files per study, {args.link}; {machine_description()}")
    print(f"{'files':>7} {'workers':>7} {'seconds':>8} {'files/s':>8} {'peak RSS MiB':>12}"
          f" | {'resume s':>8} {'files/s':>8} {'peak RSS MiB':>12}")
    for n, w, first, again in rows:
        print(f"{n:7d} {w:7d} {cells(first, n)} | {cells(again, n)}")
    small, large = min(args.files), max(args.files)
    for w in args.workers if small != large else []:
        peak = {n: (f.get("rss"), a.get("rss")) for n, ww, f, a in rows if ww == w}
        if None not in peak[large] + peak[small]:
            print(f"peak RSS {large} / {small} files, {w} workers: scan "
                  f"{peak[large][0] / peak[small][0]:.2f}x, resume "
                  f"{peak[large][1] / peak[small][1]:.2f}x (flat: ≈ 1)")
    print("scan_report.csv of the first finished scan, reasons (first 60 characters):")
    for reason, k in (reasons if reasons is not None else {}).items():
        print(f"  {k:6d}  {reason}")
    if any("error" in row[2] or "error" in row[3] for row in rows):
        sys.exit("some scans did not finish (see the table)")


if __name__ == "__main__":
    main()
