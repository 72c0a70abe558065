"""The state of a scan: an SQLite database beside the manifest with one row per file — its path,
size and modification time, and what its header said — so a re-run (after a kill, or on a grown
export) reads only new or changed files, and the manifest is written by streaming rows out of it
(memory flat in the number of files). It holds keyed pseudonyms, never a raw identifier.

Results are committed in batches: a SIGKILL loses at most the last batch, whose files are read
again on the next run. Each run is numbered; a file the walk meets is stamped with the run and
its place in the walk, and the files not stamped by the end of a run (gone from the export) are
deleted.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from echoclr.valid_json import json_text

BATCH = 500  # results per commit: what a kill can lose (and the next run reads again)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,   -- below the scanned root
    size INTEGER NOT NULL,   -- bytes; -1: the file could not be stat'ed
    mtime_ns INTEGER NOT NULL,
    run INTEGER NOT NULL,    -- the last run whose walk met the file
    seq INTEGER NOT NULL,    -- its place in that walk (the report's order)
    skip TEXT,               -- why it is no cine; NULL for a cine
    study TEXT, patient TEXT, accession TEXT,  -- keyed hashes
    facts TEXT               -- the cine's header facts, JSON
);
"""


class ScanState:
    """The scan state of one manifest, tied to a salt: a state made with another salt (whose
    pseudonyms would differ), or an unreadable one, is emptied on :meth:`open`."""

    def __init__(self, path: Path, salt: str):
        self.path = Path(path)
        self.fingerprint = hmac.new(salt.encode(), b"echoclr scan", "sha256").hexdigest()[:16]
        self.db: sqlite3.Connection | None = None
        self.run = 0
        self._pending = 0  # writes since the last commit

    def open(self) -> Self:
        """Connect (creating the database if needed) and start a new run."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connect()
        except sqlite3.DatabaseError:  # not a database (a torn or foreign file): start afresh
            self.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._connect()
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("salt") != self.fingerprint:
            self.db.execute("DELETE FROM files")
        self.run = int(meta.get("run", 0)) + 1 if meta.get("salt") == self.fingerprint else 1
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [("salt", self.fingerprint), ("run", str(self.run))])
        self.db.commit()
        return self

    def _connect(self) -> None:
        self.db = sqlite3.connect(self.path)
        # WAL: a commit is one append, and a SIGKILL cannot tear the database
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        if self.db is not None:
            self.db.commit()
            self.db.close()
            self.db = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def met(self, key: tuple[str, int, int], seq: int) -> bool:
        """Stamp the file the walk met at place ``seq``; True when its state is current (same
        size and mtime), so its header need not be read again."""
        path, size, mtime_ns = key
        row = self.db.execute("SELECT size, mtime_ns FROM files WHERE path = ?",
                              (path,)).fetchone()
        current = size >= 0 and row == (size, mtime_ns)
        if current:
            self.db.execute("UPDATE files SET run = ?, seq = ? WHERE path = ?",
                            (self.run, seq, path))
            self._written()
        return current

    def put(self, key: tuple[str, int, int], seq: int, result: dict) -> None:
        """Record what a file's header said (a :func:`scan_file` result; its raw ``ids``, if
        any, are left out)."""
        facts = {k: v for k, v in result.items()
                 if k not in ("skip", "ids", "study", "patient", "accession")}
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, self.run, seq, result.get("skip"), result.get("study"), result.get("patient"),
             result.get("accession"), None if "skip" in result else json_text(facts, indent=None)))
        self._written()

    def _written(self) -> None:
        self._pending += 1
        if self._pending >= BATCH:
            self.db.commit()
            self._pending = 0

    def finish(self) -> None:
        """Forget the files this run's walk did not meet (gone from the export), and commit."""
        self.db.execute("DELETE FROM files WHERE run != ?", (self.run,))
        self.db.commit()
        self._pending = 0

    def cines(self) -> Iterator[tuple[str, dict]]:
        """(path, record) of every cine, sorted by study, then path; streamed."""
        rows = self.db.execute("SELECT path, study, patient, accession, facts FROM files "
                               "WHERE run = ? AND skip IS NULL ORDER BY study, path",
                               (self.run,))
        for path, study, patient, accession, facts in rows:
            yield path, {"study": study, "patient": patient, "accession": accession,
                         **json.loads(facts)}

    def skipped(self) -> Iterator[tuple[str, str]]:
        """(path, reason) of every file that is no cine, in the walk's order; streamed."""
        yield from self.db.execute("SELECT path, skip FROM files WHERE run = ? AND skip IS NOT "
                                   "NULL ORDER BY seq", (self.run,))

    def counts(self) -> dict:
        """Cines, studies, patients (a cine without a patient ID counts as its study's patient)
        and {reason: files} of this run, the most frequent first (ties in the walk's order)."""
        n_cines, n_studies, n_patients = self.db.execute(
            "SELECT count(*), count(DISTINCT study), count(DISTINCT coalesce(nullif(patient, ''),"
            " study)) FROM files WHERE run = ? AND skip IS NULL", (self.run,)).fetchone()
        reasons = self.db.execute(
            "SELECT skip, count(*) AS n FROM files WHERE run = ? AND skip IS NOT NULL "
            "GROUP BY skip ORDER BY n DESC, min(seq)", (self.run,))
        return {"cines": n_cines, "studies": n_studies, "patients": n_patients,
                "skipped": dict(reasons)}

    def keys(self, column: str) -> Iterator[str | None]:
        """The distinct values of ``column`` (study, patient or accession) over this run's
        cines; streamed."""
        if column not in ("study", "patient", "accession"):
            raise ValueError(f"no such key column: {column}")
        for (value,) in self.db.execute(f"SELECT DISTINCT {column} FROM files WHERE run = ? AND "
                                        "skip IS NULL", (self.run,)):
            yield value
