"""``echoclr ingest``: decode a manifest's videos once into a cache of small uint8 arrays.

The rows are validated, identified and split first (:mod:`echoclr.data.ingest_plan`); each video
is then decoded and preprocessed (:mod:`echoclr.data.preprocess`, as in Holste et al. 2024) and
written as one cache entry (:mod:`echoclr.data.cache`) by parallel workers; a bad file is skipped
with its reason and never stops the run, and a re-run reuses the entries of unchanged files.
Study and patient ids leave as keyed pseudonyms, input paths only when asked for.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from echoclr.data.cache import (
    cache_rows,
    check_cache,
    entry_paths,
    process_video,
    read_entry,
    write_cache_index,
)
from echoclr.data.ingest_plan import Plan, Skipped, plan_ingest
from echoclr.data.manifest import resolve_path
from echoclr.data.preprocess import Preprocessing
from echoclr.data.problems import FIRST_LINES, ManifestError, ManifestProblem, list_lines
from echoclr.data.pseudonyms import check_private_location, pseudonymise, write_id_map
from echoclr.data.summary import describe
from echoclr.errors import UserError
from echoclr.options import ViewSetting, opt, required, view_opt
from echoclr.workers import run_jobs


@dataclass(frozen=True)
class IngestConfig(ViewSetting):
    """Settings of one ingest run; the resolved config (minus ``salt``) goes to the cache."""

    manifest: str = required("The manifest CSV: path, study_id and optionally patient_id, view, "
                             "split, fps and binary label columns.")
    out: str = required("Cache folder; created, or resumed when it exists.")
    size: int = opt(112, "Side of the square output frames, in pixels (paper: 112).")
    max_frames: int = opt(100, "Frames kept from the start of each video (paper: 100).")
    min_fps: float = opt(25.0, "Videos slower than this many frames/s (Doppler, stills) are "
                               "skipped (paper: 25).")
    target_fps: float | None = opt(None, "Resample every video in time to this many frames/s; "
                                         "None keeps each video's own rate.")
    view: str | None = view_opt("all", "Keep only the manifest rows of this echo view (PLAX, "
                                       "A4C …, in any case); all: every row.")
    workers: int = opt(1, "Decoding processes; 1 decodes in this process.")
    salt: str = opt("", "Secret key of the pseudonyms of study and patient ids (and DICOM "
                        "identifiers); never written out.")
    stratify: str | None = opt(None, "Label columns (joined by commas) that stratify newly "
                                     "drawn splits; None: every label column, '': none.")
    splits: tuple[float, float, float] = opt((0.75, 0.10, 0.15), "Train, val and test shares of "
                                                                 "the patients without a split.")
    seed: int = opt(0, "Seed of the split draw.")
    allowed_roots: tuple[str, ...] = opt((), "Folders the videos may lie in; empty: the "
                                             "manifest's own folder.")
    allow_outside: bool = opt(False, "Accept video paths outside the allowed roots (an explicit "
                                     "opt-in).")
    accept_one_class_splits: bool = opt(False, "Write the cache although a drawn split lacks a "
                                               "class of a label (a warning instead of an error).")
    keep_source_paths: bool = opt(False, "Keep each video's input path (column source) in the "
                                         "cache's manifest and report; paths often name patients.")
    id_map: str | None = opt(None, "Write the private pseudonym-to-original id map to this CSV "
                                   "(never inside the cache or a run folder); None: no map.")
    dry_run: bool = opt(False, "Validate the manifest (columns, files, labels, leakage, splits) "
                               "and print its summary; decode and write nothing.")

    @property
    def preprocessing(self) -> Preprocessing:
        """The record of what these settings do to every video."""
        return Preprocessing(size=self.size, max_frames=self.max_frames, min_fps=self.min_fps,
                             target_fps=self.target_fps)


@dataclass
class IngestResult:
    """What an ingest run did; ``skipped`` holds each left-out row (line, path, reason)."""

    n_ok: int
    n_skipped: int
    skipped: list[Skipped] = field(default_factory=list)
    cache_dir: str = ""
    n_reused: int = 0  # videos already in the cache from an earlier run, not decoded again
    show_paths: bool = False  # name input paths in the summary (--keep-source-paths)
    dry_run: str = ""  # the manifest's summary, when nothing was decoded (--dry-run)

    @property
    def ok(self) -> bool:
        """True when nothing was skipped (the CLI exits 1 otherwise)."""
        return self.n_skipped == 0

    @property
    def reasons(self) -> dict[str, str]:
        """{path as in the manifest: reason} of every skipped row."""
        return {s.path: s.reason for s in self.skipped}

    def summary(self) -> str:
        """A few lines for the terminal: counts, then each skipped row (its manifest line; its
        path only with --keep-source-paths) and why; a reason repeated on many rows is one line."""
        if self.dry_run:
            head = [f"dry run: nothing decoded or written; {self.n_ok} videos would be ingested"
                    f", {len(self.skipped)} skipped", self.dry_run]
        else:
            head = [f"cached {self.n_ok} videos in {self.cache_dir} ({self.n_reused} from an "
                    f"earlier run); skipped {self.n_skipped}"]
        groups: dict[str, list[Skipped]] = {}
        for s in self.skipped:
            groups.setdefault(s.kind or s.reason, []).append(s)
        lines = []
        for kind, group in groups.items():
            if len(group) > FIRST_LINES:
                note = "; each file is cached once" if kind == "same content" else ""
                lines.append(f"  {len(group):,} rows: {kind}, "
                             f"{list_lines([s.line for s in group])}{note}")
            else:
                lines += [f"  line {s.line}{f' ({s.path})' if self.show_paths else ''}: "
                          f"{s.reason}" for s in group]
        return "\n".join(head + lines)


def ingest(cfg: IngestConfig) -> IngestResult:
    """Decode, preprocess and cache a manifest's videos; resumable, a bad file never stops it.

    Writes ``out/videos/<key>.npy`` (uint8 (T, S, S)) with a ``<key>.json`` sidecar, then
    ``manifest.csv`` (input columns with pseudonymous ``study_id``/``patient_id``; ``path``
    points into the cache; ``manifest_line``, ``n_frames``, ``fps``, ``split``, ``height``,
    ``width``, ``us_regions``, ``_study_uid_hash``, ``_patient_id_hash``; ``source`` only with
    ``keep_source_paths``), ``ingest_report.csv`` (``line``, ``reason`` [, ``path``] per skipped
    row), ``ingest_config.json``, and the id map where ``id_map`` says.

    Raises:
        ManifestError: the manifest has problems other than missing files (those are skipped).
        UserError: a drawn split lacks a class of a label; the id map would go inside the cache
            or a run folder.
        ValueError: the cache was built with other preprocessing settings.
    """
    out, prep = Path(cfg.out), cfg.preprocessing
    check_cache(out, prep)
    if cfg.id_map:
        check_private_location(cfg.id_map, not_under=[out])
    plan = _plan(cfg)
    if cfg.dry_run:
        return IngestResult(n_ok=len(plan.rows), n_skipped=0, skipped=plan.skipped,
                            cache_dir=str(out), show_paths=cfg.keep_source_paths,
                            dry_run=describe(plan.rows))
    df, id_map = pseudonymise(plan.rows, cfg.salt)
    keys = {i: plan.identities[line].key for i, line in df["_line"].items()}
    records, jobs = {}, {}
    root = Path(cfg.manifest).parent
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for i, path in df["path"].items():
        record = read_entry(out, keys[i])
        if record is not None:
            records[i] = record
        else:
            jobs[i] = dict(path=str(resolve_path(path, root)), npy=str(entry_paths(out, keys[i])[0]),
                           size=cfg.size, max_frames=cfg.max_frames, min_fps=cfg.min_fps,
                           salt=cfg.salt, manifest_fps=_manifest_fps(df, i),
                           target_fps=cfg.target_fps)
    n_reused, skipped = len(records), list(plan.skipped)
    for i, (status, value) in run_jobs(process_video, jobs, cfg.workers, desc="ingest",
                                       unit="video", died=_died):
        if status == "ok":
            records[i] = value
        else:
            skipped.append(Skipped(int(df.at[i, "_line"]), str(plan.rows.at[i, "path"]), value))
    skipped.sort(key=lambda s: s.line)
    rows = cache_rows(df, records, keys, keep_source_paths=cfg.keep_source_paths)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("salt", "id_map")}
    write_cache_index(out, settings | {"salted": bool(cfg.salt)}, prep, rows,
                      _report(skipped, cfg.keep_source_paths))
    if cfg.id_map:
        write_id_map(cfg.id_map, id_map)
    if not cfg.salt:
        # IDs (MRNs, accession numbers) are short and guessable: unsalted, their hash can be
        # reversed by hashing candidate IDs, so the pseudonyms are only pseudonymous with a salt.
        warnings.warn("ingest: no --salt given, so study and patient ids (and DICOM patient IDs) "
                      "are hashed without a secret and can be recovered by hashing guessed IDs; "
                      "pass --salt SECRET (kept out of the cache) to pseudonymise them",
                      stacklevel=2)
    return IngestResult(n_ok=len(records), n_skipped=len(skipped), skipped=skipped,
                        cache_dir=str(out), n_reused=n_reused, show_paths=cfg.keep_source_paths)


def _plan(cfg: IngestConfig) -> Plan:
    """The rows to decode; in a dry run a missing file is a problem too. A drawn split lacking
    a class is an error, or a warning with --accept-one-class-splits."""
    root = Path(cfg.manifest).parent
    # A manifest is input from elsewhere: by default it may only name files under its own folder
    # (no "../" or absolute path or symlink out of it), so reading anything else is a choice.
    allowed = None if cfg.allow_outside else ([*cfg.allowed_roots] or [root])
    plan = plan_ingest(cfg.manifest, view=cfg.view, allowed_roots=allowed, stratify=cfg.stratify,
                       seed=cfg.seed, fractions=tuple(cfg.splits))
    unreadable = [s for s in plan.skipped if s.kind != "same content"]
    if cfg.dry_run and unreadable:
        raise ManifestError(cfg.manifest, [ManifestProblem(s.line, "path", s.reason, "file")
                                           for s in unreadable])
    if plan.one_class:
        shares = " ".join(f"{f:g}" for f in cfg.splits)
        message = (f"{cfg.manifest}: drawn splits that cannot select or test a model: "
                   + "; ".join(plan.one_class) + f". Add more patients, or change the split "
                   f"shares (--splits, now {shares}), or pass --accept-one-class-splits to write "
                   "the cache anyway")
        if not cfg.accept_one_class_splits:
            raise UserError(message)
        warnings.warn(f"ingest: {message}", stacklevel=3)
    return plan


def _report(skipped: list[Skipped], with_paths: bool) -> pd.DataFrame:
    """ingest_report.csv: line and reason per skipped row; the input path only when asked."""
    table = pd.DataFrame({"line": [s.line for s in skipped],
                          "reason": [s.reason for s in skipped]})
    return table.assign(path=[s.path for s in skipped]) if with_paths else table


def _died(how: str) -> tuple[str, str]:
    return "skip", f"worker died ({how}) while decoding"


def _manifest_fps(df: pd.DataFrame, i) -> float | None:
    if "fps" not in df.columns:
        return None
    value = pd.to_numeric(pd.Series([df.at[i, "fps"]]), errors="coerce").iloc[0]
    return float(value) if pd.notna(value) and value > 0 else None
