"""Walk a PACS export and read each file's DICOM header (never its pixels): what a cine is
(frames, rate, size, colour space, transfer syntax, device, ultrasound regions, any view the
header names), with identifiers as keyed pseudonyms, or why a file is no cine.

The walk is a stream (no list of every file); :mod:`echoclr.data.scan_state` keeps what each
file said, so a re-run reads only new or changed files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from echoclr.data.dicom import dicom_fps, hash_identifier
from echoclr.data.dicom_header import is_dicom, not_a_cine, read_header, us_regions, view_hint

# Identifiers a record carries, pseudonymised: its study, its patient, its accession number.
ID_TAGS = {"study": "StudyInstanceUID", "patient": "PatientID", "accession": "AccessionNumber"}


def _listing(root: str | Path) -> Iterator[tuple[str, list[str]]]:
    """(folder, sorted file names) below ``root``: hidden files and folders left out, symlinked
    folders not followed — the files a scan reads."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield folder, sorted(f for f in files if not f.startswith("."))


def count_files(root: str | Path) -> int:
    """How many files :func:`walk_files` yields (names only, nothing stat'ed: a progress bar's
    length, in constant memory)."""
    return sum(len(names) for _, names in _listing(root))


def walk_files(root: str | Path) -> Iterator[tuple[str, int, int]]:
    """(path relative to ``root``, size, mtime in ns) of every file below it, sorted within each
    folder; hidden files and folders are left out, symlinked folders are not followed; a file
    that cannot be stat'ed (a symlink loop) comes with size -1 and its OS error as mtime 0."""
    for folder, names in _listing(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                yield os.path.relpath(path, root), -1, 0
                continue
            yield os.path.relpath(path, root), st.st_size, st.st_mtime_ns


def scan_file(path: str, salt: str, with_ids: bool = False) -> dict:
    """Header facts of one file, or ``{"skip": reason}``; never raises (one job of a scan).

    Returns:
        ``study``, ``patient``, ``accession`` (keyed hashes, None when absent), ``n_frames``,
        ``fps`` (None when the header states none), ``height``, ``width``, ``photometric``,
        ``transfer_syntax``, ``manufacturer``, ``device_model``, ``us_regions``, ``view_hint``;
        with ``with_ids`` also ``ids``: the raw study UID and patient ID, for an id map only.
    """
    try:
        if not is_dicom(path):
            return {"skip": "not a DICOM file"}
        return _header_facts(path, read_header(path), salt, with_ids)
    except Exception as err:  # a corrupt file is one report row, never a crash
        return {"skip": f"unreadable DICOM ({type(err).__name__}: {err})".replace(path, "<file>")}


def _header_facts(path: str, header, salt: str, with_ids: bool) -> dict:
    if reason := not_a_cine(header):
        return {"skip": reason}
    ds = header.ds
    if not str(ds.get("StudyInstanceUID", "") or "").strip():
        return {"skip": "no StudyInstanceUID: the cine cannot be grouped into a study"}
    record = {key: hash_identifier(ds.get(tag), salt) for key, tag in ID_TAGS.items()}
    record |= {"n_frames": header.n_frames, "fps": dicom_fps(ds), "height": int(ds.Rows),
               "width": int(ds.Columns),
               "photometric": str(ds.get("PhotometricInterpretation", "")).strip(),
               "transfer_syntax": str(header.syntax.name or header.syntax),
               "manufacturer": str(ds.get("Manufacturer", "") or "").strip(),
               "device_model": str(ds.get("ManufacturerModelName", "") or "").strip(),
               "us_regions": us_regions(ds), "view_hint": view_hint(ds)}
    if with_ids:
        record["ids"] = {"study": str(ds.StudyInstanceUID), "patient": str(ds.get("PatientID", ""))}
    return record
