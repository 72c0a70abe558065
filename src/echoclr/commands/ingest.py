"""``echoclr ingest``: decode a manifest's videos once into a cache of small uint8 arrays.

Each video is decoded and preprocessed (:mod:`echoclr.data.preprocess`, as in Holste et al.
2024) and written as one cache entry (:mod:`echoclr.data.cache`) by parallel workers; a bad
file is skipped with its reason and never stops the run, and a re-run reuses finished entries.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from echoclr.data.cache import (
    check_cache, entry_paths, process_video, read_entry, write_cache_index,
)
from echoclr.data.manifest import (
    ManifestError, ManifestProblem, label_columns, read_manifest, resolve_path, validate_manifest,
)
from echoclr.data.preprocess import Preprocessing
from echoclr.data.problems import FILE_KIND, line_of
from echoclr.data.splits import assign_splits, one_class_splits
from echoclr.errors import UserError
from echoclr.options import opt, required


@dataclass(frozen=True)
class IngestConfig:
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
    view: str | None = opt(None, "Keep only the manifest rows whose view column equals this "
                                 "(e.g. PLAX); None keeps all.")
    workers: int = opt(1, "Decoding processes; 1 decodes in this process.")
    salt: str = opt("", "Secret prepended to DICOM identifiers before hashing; never written "
                        "out.")
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

    @property
    def preprocessing(self) -> Preprocessing:
        """The record of what these settings do to every video."""
        return Preprocessing(size=self.size, max_frames=self.max_frames, min_fps=self.min_fps,
                             target_fps=self.target_fps)


@dataclass
class IngestResult:
    """What an ingest run did; ``skipped`` holds (path as in the manifest, reason)."""

    n_ok: int
    n_skipped: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_dir: str = ""
    n_reused: int = 0  # videos already in the cache from an earlier run, not decoded again

    @property
    def ok(self) -> bool:
        """True when nothing was skipped (the CLI exits 1 otherwise)."""
        return self.n_skipped == 0

    def summary(self) -> str:
        """A few lines for the terminal: counts, then each skipped file and why."""
        lines = [f"cached {self.n_ok} videos in {self.cache_dir} ({self.n_reused} from an "
                 f"earlier run); skipped {self.n_skipped}"]
        lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def ingest(cfg: IngestConfig) -> IngestResult:
    """Decode, preprocess and cache a manifest's videos; resumable, a bad file never stops it.

    Writes ``out/videos/<key>.npy`` (uint8 (T, S, S)) with a ``<key>.json`` sidecar, then
    ``manifest.csv`` (input columns; ``path`` points into the cache; ``source``, ``n_frames``,
    ``fps``, ``split``, ``height``, ``width``, ``_study_uid_hash``, ``_patient_id_hash``),
    ``ingest_report.csv`` (``path``, ``reason`` per skipped file) and ``ingest_config.json``.

    Raises:
        ManifestError: the manifest has problems other than missing files (those are skipped).
        ValueError: the cache was built with other preprocessing settings.
    """
    out, prep = Path(cfg.out), cfg.preprocessing
    check_cache(out, prep)
    df, missing = _load_manifest(cfg)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    skipped = [(str(df.at[i, "path"]), "file not found") for i in missing]
    todo, records = [], {}
    for i in df.index.difference(missing):
        source = str(df.at[i, "path"])
        record = read_entry(out, source)
        if record is not None:
            records[i] = record
        else:
            todo.append((i, source))
    n_reused = len(records)
    root = Path(cfg.manifest).parent
    jobs = {i: dict(path=str(resolve_path(s, root)), npy=str(entry_paths(out, s)[0]),
                    size=cfg.size, max_frames=cfg.max_frames, min_fps=cfg.min_fps, salt=cfg.salt,
                    manifest_fps=_manifest_fps(df, i), target_fps=cfg.target_fps)
            for i, s in todo}
    for i, (status, value) in _run(jobs, cfg.workers):
        if status == "ok":
            records[i] = value
        else:
            skipped.append((str(df.at[i, "path"]), value))
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "salt"}
    write_cache_index(out, settings | {"salted": bool(cfg.salt)}, prep, df, records, skipped)
    if not cfg.salt and any(r["meta"].get("patient_id_hash") for r in records.values()):
        # Patient IDs (MRNs) are short and guessable: unsalted, their hash can be reversed by
        # hashing candidate IDs, so the cache's _patient_id_hash is only pseudonymous with a salt.
        warnings.warn("ingest: no --salt given, so DICOM patient IDs are hashed without a secret "
                      "and can be recovered from _patient_id_hash by hashing guessed IDs; pass "
                      "--salt SECRET (kept out of the cache) to pseudonymise them", stacklevel=2)
    return IngestResult(n_ok=len(records), n_skipped=len(skipped), skipped=skipped,
                        cache_dir=str(out), n_reused=n_reused)


def _load_manifest(cfg: IngestConfig) -> tuple[pd.DataFrame, list]:
    """The manifest filtered by view, with splits; and the index of rows whose file is missing."""
    df = read_manifest(cfg.manifest)
    root = Path(cfg.manifest).parent
    # A manifest is input from elsewhere: by default it may only name files under its own folder
    # (no "../" or absolute path or symlink out of it), so reading anything else is a choice.
    allowed = None if cfg.allow_outside else ([*cfg.allowed_roots] or [root])
    problems = validate_manifest(df, root, allowed_roots=allowed)
    fatal = [p for p in problems if p.kind != FILE_KIND]
    if any(p.kind == "outside" for p in fatal):
        fatal.append(ManifestProblem(None, "path", (
            f"allowed roots: {[str(a) for a in allowed]}")))
    if fatal:
        raise ManifestError(cfg.manifest, fatal)
    missing_lines = {p.line for p in problems if p.kind == FILE_KIND}
    df = df.assign(_missing=[line_of(i) in missing_lines for i in range(len(df))])
    if cfg.view is not None:
        if "view" not in df.columns:
            problem = ManifestProblem(None, "view", f"view={cfg.view!r} given but no view column")
            raise ManifestError(cfg.manifest, [problem])
        df = df[df["view"] == cfg.view]
    df = _draw_splits(df.reset_index(drop=True), cfg)
    missing = list(df.index[df.pop("_missing")])
    return df, missing


def _draw_splits(df: pd.DataFrame, cfg: IngestConfig) -> pd.DataFrame:
    """Splits for the rows without one, stratified by every label unless told otherwise; a drawn
    split lacking a class of a label is an error (a warning with --accept-one-class-splits)."""
    drawing = "split" not in df.columns or df["split"].isna().any()
    labels = label_columns(df)
    stratify = ",".join(labels) if cfg.stratify is None else cfg.stratify
    df = assign_splits(df, stratify=stratify, seed=cfg.seed, fractions=tuple(cfg.splits))
    lacking = one_class_splits(df, labels) if drawing else []
    if lacking:
        shares = " ".join(f"{f:g}" for f in cfg.splits)
        message = (f"{cfg.manifest}: drawn splits that cannot select or test a model: "
                   + "; ".join(lacking) + f". Add more patients, or change the split shares "
                   f"(--splits, now {shares}), or pass --accept-one-class-splits to write the "
                   "cache anyway")
        if not cfg.accept_one_class_splits:
            raise UserError(message)
        warnings.warn(f"ingest: {message}", stacklevel=3)
    return df


def _manifest_fps(df: pd.DataFrame, i) -> float | None:
    if "fps" not in df.columns:
        return None
    value = pd.to_numeric(pd.Series([df.at[i, "fps"]]), errors="coerce").iloc[0]
    return float(value) if pd.notna(value) and value > 0 else None


def _run(jobs: dict, workers: int):
    """Yield (index, (status, value)) per job, in completion order, with a progress bar."""
    if workers <= 1 or len(jobs) <= 1:
        with tqdm(total=len(jobs), desc="ingest", unit="video", disable=None) as bar:
            for i, job in jobs.items():
                yield i, process_video(**job)
                bar.update()
        return
    # Fork where available: workers run only numpy/scipy/PyAV/pydicom code (no torch, no
    # OpenMP), so forking is safe and skips ~2 s of imports per spawned worker.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(process_video, **job): i for i, job in jobs.items()}
        with tqdm(total=len(jobs), desc="ingest", unit="video", disable=None) as bar:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as err:  # a worker died (e.g. killed for memory)
                    result = ("skip", f"worker failed: {type(err).__name__}: {err}")
                yield futures[future], result
                bar.update()
