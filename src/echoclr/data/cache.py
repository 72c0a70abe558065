"""The cache ``echoclr ingest`` writes: the one writer and the one reader of its format.

    CACHE/
      videos/<key>.npy     uint8 (T, S, S), memory-mappable; <key> names the file's version
                           (size, mtime, content hash: :class:`~echoclr.data.identity.FileIdentity`)
      videos/<key>.json    its sidecar: n_frames, fps, source_fps, fps_from, height, width, meta
                           (non-identifying: hashes, DICOM regions, codec) and preprocess (mask,
                           crop box, padding)
      manifest.csv         the manifest's rows of cached videos, ids as pseudonyms: path →
                           videos/<key>.npy, manifest_line (the input manifest's line), n_frames,
                           fps, split, height, width, us_regions, _study_uid_hash,
                           _patient_id_hash; source (the input path) only when asked for
      ingest_report.csv    line and reason of every skipped file (its path only when asked for)
      ingest_config.json   the ingest settings (never the salt), "salted", and "preprocessing":
                           the :class:`~echoclr.data.preprocess.Preprocessing` record

Every file is written atomically, the array last, so an entry counts only when both exist.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.atomic import atomic_write, atomic_write_bytes
from echoclr.data.dicom_header import cine_skip_reason
from echoclr.data.manifest import of_view, read_manifest
from echoclr.data.preprocess import CACHE_KEYS, Preprocessing, check_compatible, preprocessing_of
from echoclr.data.reduce import prepare_source
from echoclr.data.video import open_video
from echoclr.data.video_types import FrameSource, VideoReadError

CONFIG = "ingest_config.json"


def entry_paths(root: str | Path, key: str) -> tuple[Path, Path]:
    """The ``.npy`` and ``.json`` files of the cache entry ``key`` (a ``FileIdentity.key``)."""
    stem = Path(root) / "videos" / key
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def read_entry(root: str | Path, key: str) -> dict | None:
    """The sidecar of a finished entry (array and sidecar both present), else None."""
    npy, sidecar = entry_paths(root, key)
    return json.loads(sidecar.read_text()) if npy.is_file() and sidecar.is_file() else None


def decode_and_preprocess(path: str | Path, prep: Preprocessing, *, salt: str = "",
                          manifest_fps: float | None = None
                          ) -> tuple[np.ndarray, dict, FrameSource, str]:
    """Decode one file and preprocess it as ``prep`` says, in bounded memory
    (:mod:`echoclr.data.reduce`): what its cache entry holds, and what ``predict`` and
    ``saliency`` score.

    Returns:
        uint8 (T, size, size) frames, the preprocessing info, the opened video (``fps`` set to
        the rate used; ``height``, ``width``, ``meta``) and where its frame rate came from
        ("file", "manifest" or "default").

    Raises:
        VideoReadError: unreadable, not a cine (a still, a report, another modality), or slower
            than ``prep.min_fps`` (Doppler strips).
    """
    if reason := cine_skip_reason(path):
        raise VideoReadError(path, reason)
    source = open_video(path, max_frames=prep.source_frames, salt=salt)
    frames, info, source.fps, fps_from = prepare_source(source, prep, path=path,
                                                        manifest_fps=manifest_fps)
    return frames, info, source, fps_from


def process_video(*, path: str, npy: str, size: int, max_frames: int, min_fps: float, salt: str,
                  manifest_fps: float | None, target_fps: float | None = None
                  ) -> tuple[str, dict | str]:
    """Decode, check fps, preprocess and cache one video (one ingest job); never raises.

    Returns:
        ("ok", record) with the sidecar's content, or ("skip", reason).
    """
    prep = Preprocessing(size=size, max_frames=max_frames, min_fps=min_fps,
                         target_fps=target_fps)
    try:
        frames, info, video, fps_from = decode_and_preprocess(path, prep, salt=salt,
                                                              manifest_fps=manifest_fps)
        record = {
            "n_frames": len(frames), "fps": float(target_fps or video.fps),
            "source_fps": float(video.fps), "fps_from": fps_from,
            "height": int(video.height), "width": int(video.width),
            "us_regions": video.meta.get("us_regions", ""), "meta": video.meta,
            "preprocess": info,
        }
        npy_path = Path(npy)
        atomic_write_bytes(npy_path.with_suffix(".json"), json.dumps(record, indent=1).encode())
        atomic_write(npy_path, lambda f: np.save(f, np.ascontiguousarray(frames)))
        return "ok", record
    except VideoReadError as err:
        return "skip", err.reason.replace(path, "<file>")
    except Exception as err:  # one bad file never stops the run
        return "skip", f"{type(err).__name__}: {err}".replace(path, "<file>")


def check_cache(root: str | Path, prep: Preprocessing) -> None:
    """Refuse to add videos prepared as ``prep`` to a cache whose frames were prepared otherwise.

    Raises:
        ValueError: naming the cache's config and the differing settings.
    """
    file = Path(root) / CONFIG
    if file.is_file():
        check_compatible(prep, preprocessing_of(json.loads(file.read_text()), file),
                         expected_from="these ingest settings", found_from=str(file),
                         fix="ingest into another folder", keys=CACHE_KEYS)


def cache_rows(df: pd.DataFrame, records: dict, keys: dict, *, keep_source_paths: bool
               ) -> pd.DataFrame:
    """The cache's manifest rows: ``df``'s rows of cached videos (``records``: index → sidecar
    content; ``keys``: index → entry key; ``df._line``: the input manifest's line), ``path``
    pointing into the cache; the input path kept as ``source`` only with ``keep_source_paths``."""
    rows = df.loc[sorted(records)].copy()
    if keep_source_paths:
        rows["source"] = rows["path"]
    rows["path"] = [f"videos/{keys[i]}.npy" for i in rows.index]
    rows["manifest_line"] = rows.pop("_line")
    for column in ("n_frames", "fps", "height", "width"):
        rows[column] = [records[i][column] for i in rows.index]
    rows["us_regions"] = [records[i]["meta"].get("us_regions", "") for i in rows.index]
    rows["_study_uid_hash"] = [records[i]["meta"].get("study_uid_hash") for i in rows.index]
    rows["_patient_id_hash"] = [records[i]["meta"].get("patient_id_hash") for i in rows.index]
    return rows


def write_manifest(root: str | Path, rows: pd.DataFrame) -> None:
    """Write a cache's ``manifest.csv`` atomically: ingest's index, or later the same videos
    with new columns (``echoclr views``' predicted views)."""
    atomic_write_bytes(Path(root) / "manifest.csv", rows.to_csv(index=False).encode())


def write_cache_index(root: str | Path, settings: dict, prep: Preprocessing, rows: pd.DataFrame,
                      report: pd.DataFrame) -> None:
    """Write a cache's manifest.csv (:func:`cache_rows`), ingest_report.csv (line, reason[,
    path] per skipped file) and ingest_config.json (``settings``, without the salt, and the
    preprocessing record); the ``videos/<key>.npy`` files are already written."""
    root = Path(root)
    write_manifest(root, rows)
    atomic_write_bytes(root / "ingest_report.csv", report.to_csv(index=False).encode())
    config = settings | {"preprocessing": prep.to_dict()}
    atomic_write_bytes(root / CONFIG, json.dumps(config, indent=2).encode())


def _npy_header(path: Path) -> tuple[tuple[int, ...], str, np.dtype, int]:
    """(shape, memory order, dtype, data offset) of a ``.npy`` file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"{path}: .npy format {version} is not one a cache writes")
        shape, fortran, dtype = readers[version](f)
        return shape, "F" if fortran else "C", dtype, f.tell()


class VideoCache:
    """A cache folder written by ``ingest``: ``manifest.csv`` + ``videos/*.npy`` (uint8
    (T, H, W)) + ``ingest_config.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{self.root}: not an echoclr cache (no manifest.csv); run `echoclr ingest` first")
        self.manifest = read_manifest(manifest)
        self.config_path = self.root / CONFIG
        self.config = json.loads(self.config_path.read_text()) if self.config_path.is_file() \
            else {}
        self._headers: dict[tuple, tuple] = {}  # (path, mtime, size) -> .npy header (open)

    @property
    def preprocessing(self) -> Preprocessing:
        """The record of what the cache's frames went through."""
        return preprocessing_of(self.config, self.config_path)

    def rows(self, split: str | None = None, view: str | None = None) -> pd.DataFrame:
        """Manifest rows of one split (and view), index reset."""
        df = self.manifest
        if split is not None:
            df = df[df["split"] == split]
        if view is not None and "view" in df.columns:
            df = df[of_view(df["view"], view)]
        return df.reset_index(drop=True)

    def open(self, path: str) -> np.ndarray:
        """Memory-map one cached video: read-only uint8 (T, H, W); only sliced frames are read.

        Training opens a video per clip, so the ``.npy`` header is parsed once per file version
        (keyed by size and mtime) and the file mapped directly: ``np.load(mmap_mode="r")``
        parses the header on every call, 3x the time of opening and slicing a 4-frame clip.
        """
        full = self.root / path
        stat = os.stat(full)
        key = (path, stat.st_mtime_ns, stat.st_size)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = _npy_header(full)
        shape, order, dtype, offset = header
        with open(full, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        count = math.prod(shape)
        return np.frombuffer(mapped, dtype, count=count, offset=offset).reshape(shape, order=order)
