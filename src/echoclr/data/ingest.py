"""``echoclr ingest``: decode a manifest's videos once into a cache of small uint8 arrays.

Preprocessing as in Holste et al. 2024: grayscale, the first 100 frames, everything outside the
ultrasound fan zeroed, cropped to the fan, resized to 112x112 by area interpolation; videos
below 25 fps (Doppler, stills) are skipped. ``predict`` replays :func:`preprocess` exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from echoclr.atomic import atomic_write, atomic_write_bytes
from echoclr.data.fan import estimate_fan, region_mask
from echoclr.data.manifest import (
    ManifestError, ManifestProblem, assign_splits, read_manifest, resolve_path, validate_manifest,
)
from echoclr.data.video import read_video
from echoclr.data.video_types import Video, VideoReadError, to_grayscale

DEFAULT_FPS = 30.0  # Hz, when neither the file nor the manifest gives a rate (as the paper)
PREPROCESSING_VERSION = 1  # bump when preprocess() changes what it writes
TISSUE_2D = 1  # RegionSpatialFormat of a 2D tissue region (the only kind used as a mask)


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run; the resolved config (minus ``salt``) goes to the cache."""

    manifest: str  # CSV: path, study_id [, patient_id, view, split, fps, labels...]
    out: str  # cache folder, created or resumed
    size: int = 112  # pixels: side of the square output frames (paper: 112)
    max_frames: int = 100  # frames kept from the start of each video (paper: 100)
    min_fps: float = 25.0  # Hz: slower videos (Doppler, stills) are skipped (paper: 25)
    target_fps: float | None = None  # Hz: resample every video in time to this rate (None: keep)
    view: str | None = None  # keep only manifest rows whose `view` equals this (e.g. "PLAX")
    workers: int = 1  # decoding processes; 1 runs in this process
    salt: str = ""  # secret prepended to DICOM identifiers before hashing; never written out
    stratify: str | None = None  # label column that stratifies newly drawn splits
    splits: tuple[float, float, float] = (0.75, 0.10, 0.15)  # train/val/test shares of patients
    seed: int = 0  # seed of the split draw
    allowed_roots: tuple[str, ...] = ()  # folders videos may lie in (default: the manifest's)
    allow_outside: bool = False  # accept video paths outside the allowed roots (explicit opt-in)


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


def resample_time(frames: np.ndarray, fps: float, target_fps: float) -> np.ndarray:
    """Nearest-frame resampling to ``target_fps``, so a clip's frames span the same time in every
    video whatever its acquisition rate (30–80 Hz in one archive is common)."""
    n_out = max(1, int(np.floor((len(frames) - 1) * target_fps / fps)) + 1)
    idx = np.minimum(np.round(np.arange(n_out) * fps / target_fps).astype(int), len(frames) - 1)
    return frames[idx]


def preprocess(video: Video, *, size: int, max_frames: int,
               target_fps: float | None = None) -> tuple[np.ndarray, dict]:
    """Grayscale, mask outside the fan, crop to the fan, pad to a square, area-resize.

    The mask is the fan estimated from temporal variation (see :mod:`echoclr.data.fan`),
    intersected with the DICOM 2D-tissue region box when the header's box is plausible and
    covers the fan; the box alone when the fan is degenerate (one frame, nothing moving);
    nothing is masked when neither exists.

    Args:
        video: decoded frames (T, H, W) or (T, H, W, 3) uint8.
        size: output side in pixels.
        max_frames: keep the first ``max_frames`` frames (after resampling).
        target_fps: resample in time to this rate first (needs ``video.fps``).

    Returns:
        uint8 (min(T, max_frames), size, size), and info: ``mask_method`` ("region+fan", "fan",
        "region" or "none"), ``mask_reason``, ``mask_fraction``, ``crop_box`` (x0, y0, x1, y1;
        end exclusive, original pixels), ``pad`` (top, bottom, left, right), ``original_shape``.
    """
    frames = video.frames
    if target_fps and video.fps and abs(video.fps - target_fps) > 1e-6:
        frames = resample_time(frames, video.fps, target_fps)
    gray = to_grayscale(frames[:max_frames])
    mask, method, reason = _video_mask(gray, video.meta)
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    crop = gray[:, y0:y1, x0:x1] * mask[None, y0:y1, x0:x1]
    side = max(y1 - y0, x1 - x0)
    top, left = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    pad = (top, side - (y1 - y0) - top, left, side - (x1 - x0) - left)
    square = np.pad(crop, ((0, 0), pad[:2], pad[2:]))
    info = {
        "mask_method": method, "mask_reason": reason, "mask_fraction": round(float(mask.mean()), 4),
        "crop_box": [x0, y0, x1, y1], "pad": list(pad), "original_shape": list(video.frames.shape),
    }
    return resize_area(square, size), info


def _video_mask(gray: np.ndarray, meta: dict) -> tuple[np.ndarray, str, str]:
    """(mask, method, reason): region ∩ fan, else the region, else the fan, else everything."""
    boxes = meta.get("regions") or []
    formats = meta.get("region_spatial_formats")
    if formats is not None and len(formats) == len(boxes):
        boxes = [b for b, f in zip(boxes, formats, strict=True) if f == TISSUE_2D]
    region = region_mask(gray.shape, boxes)
    fan = estimate_fan(gray)
    if region is None:
        return (fan.mask, "fan", "") if fan.ok else (fan.mask, "none", fan.reason)
    if not fan.ok:
        return region, "region", fan.reason
    both = region & fan.mask
    if both.mean() < 0.5 * fan.mask.mean():  # the header box misses most of the fan
        return fan.mask, "fan", "DICOM region box misses most of the moving fan"
    return both, "region+fan", ""


def resize_area(frames: np.ndarray, size: int) -> np.ndarray:
    """Area-interpolate uint8 (T, h, w) to (T, size, size): each output pixel is the mean of the
    input area it covers (cv2.INTER_AREA when shrinking, to ±1 gray level).

    Computed per axis from prefix sums, without BLAS: matrix products would start BLAS thread
    pools that oversubscribe the cores when several ingest workers run.
    """
    out = np.empty((len(frames), size, size), np.uint8)
    for t in range(0, len(frames), 16):  # chunks bound the float32 temporaries
        x = _area_resize_last_axis(frames[t:t + 16], size)  # (n, h, size)
        x = _area_resize_last_axis(x.transpose(0, 2, 1), size).transpose(0, 2, 1)
        out[t:t + 16] = np.clip(np.rint(x), 0, 255)
    return out


def _area_resize_last_axis(x: np.ndarray, n_out: int) -> np.ndarray:
    """Mean over each of n_out equal intervals of the last axis, as the difference of the
    piecewise-linear integral (prefix sums) at the interval edges."""
    n_in = x.shape[-1]
    integral = np.zeros((*x.shape[:-1], n_in + 1), np.float32)
    np.cumsum(x, axis=-1, dtype=np.float32, out=integral[..., 1:])  # exact: sums < 2**24
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.minimum(edges.astype(int), n_in - 1)
    frac = (edges - lo).astype(np.float32)
    at_lo = integral[..., lo]
    at_edges = at_lo + frac * (integral[..., lo + 1] - at_lo)
    return np.diff(at_edges, axis=-1) * np.float32(n_out / n_in)


def video_key(source: str) -> str:
    """Cache file stem of a video: SHA-256 of its manifest path string, 16 hex digits."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def preprocessing_spec(cfg: IngestConfig) -> dict:
    """What a cache's frames went through; ``predict`` calls preprocess() with these values."""
    return {
        "version": PREPROCESSING_VERSION, "function": "echoclr.data.ingest.preprocess",
        "size": cfg.size, "max_frames": cfg.max_frames, "grayscale": "BT.601 luma",
        "mask": "DICOM 2D-tissue region AND fan (temporal std, largest component, convex hull);"
                " the fan alone without a plausible region",
        "crop": "mask bounding box, zero-padded to a centred square",
        "resize": "area", "dtype": "uint8", "layout": "(T, size, size)",
        "min_fps": cfg.min_fps, "default_fps": DEFAULT_FPS, "target_fps": cfg.target_fps,
    }


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
    out = Path(cfg.out)
    _check_cache_compatible(out, cfg)
    df, missing = _load_manifest(cfg)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    skipped = [(str(df.at[i, "path"]), "file not found") for i in missing]
    todo, records = [], {}
    for i in df.index.difference(missing):
        source = str(df.at[i, "path"])
        npy, sidecar = _cache_paths(out, source)
        if npy.is_file() and sidecar.is_file():
            records[i] = json.loads(sidecar.read_text())
        else:
            todo.append((i, source))
    n_reused = len(records)
    root = Path(cfg.manifest).parent
    jobs = {i: dict(path=str(resolve_path(s, root)), npy=str(_cache_paths(out, s)[0]),
                    size=cfg.size, max_frames=cfg.max_frames, min_fps=cfg.min_fps, salt=cfg.salt,
                    manifest_fps=_manifest_fps(df, i), target_fps=cfg.target_fps)
            for i, s in todo}
    for i, (status, value) in _run(jobs, cfg.workers):
        if status == "ok":
            records[i] = value
        else:
            skipped.append((str(df.at[i, "path"]), value))
    write_cache_index(out, cfg, df, records, skipped)
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
    fatal = [p for p in problems if not p.reason.startswith("file not found")]
    if any(p.reason.endswith("outside the allowed roots") for p in fatal):
        fatal.append(ManifestProblem(None, "path", (
            f"allowed roots: {[str(a) for a in allowed]}; add folders with --allowed-roots DIR "
            "... or accept any path with --allow-outside")))
    if fatal:
        raise ManifestError(cfg.manifest, fatal)
    missing_rows = {p.row for p in problems if p.reason.startswith("file not found")}
    df = df.assign(_missing=[r + 1 in missing_rows for r in range(len(df))])
    if cfg.view is not None:
        if "view" not in df.columns:
            problem = ManifestProblem(None, "view", f"view={cfg.view!r} given but no view column")
            raise ManifestError(cfg.manifest, [problem])
        df = df[df["view"] == cfg.view]
    df = assign_splits(df.reset_index(drop=True), stratify=cfg.stratify, seed=cfg.seed,
                       fractions=tuple(cfg.splits))
    missing = list(df.index[df.pop("_missing")])
    return df, missing


def _manifest_fps(df: pd.DataFrame, i) -> float | None:
    if "fps" not in df.columns:
        return None
    value = pd.to_numeric(pd.Series([df.at[i, "fps"]]), errors="coerce").iloc[0]
    return float(value) if pd.notna(value) and value > 0 else None


def _cache_paths(out: Path, source: str) -> tuple[Path, Path]:
    key = video_key(source)
    return out / "videos" / f"{key}.npy", out / "videos" / f"{key}.json"


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


def decode_and_preprocess(path: str | Path, *, size: int, max_frames: int, min_fps: float | None,
                          target_fps: float | None, salt: str = "",
                          manifest_fps: float | None = None) -> tuple[np.ndarray, dict, Video, str]:
    """Decode one file and preprocess it: the one path that ``ingest`` and ``predict`` share.

    Returns:
        uint8 (T, size, size) frames, the preprocessing info, the decoded ``Video`` (``fps`` set)
        and where its frame rate came from ("file", "manifest" or "default").

    Raises:
        VideoReadError: unreadable, or slower than ``min_fps`` (Doppler strips, stills).
    """
    # Resampling down from up to 8x the target rate still yields max_frames frames.
    source_frames = max_frames * 8 if target_fps else max_frames
    video = read_video(path, max_frames=source_frames, salt=salt)
    fps_from = "file" if video.fps else "manifest" if manifest_fps else "default"
    fps = video.fps or manifest_fps or DEFAULT_FPS
    if min_fps and fps < min_fps:
        raise VideoReadError(path, f"fps {fps:g} < {min_fps:g}")
    video.fps = fps
    frames, info = preprocess(video, size=size, max_frames=max_frames, target_fps=target_fps)
    return frames, info, video, fps_from


def process_video(*, path: str, npy: str, size: int, max_frames: int, min_fps: float, salt: str,
                  manifest_fps: float | None, target_fps: float | None = None
                  ) -> tuple[str, dict | str]:
    """Decode, check fps, preprocess and cache one video; never raises.

    Returns:
        ("ok", record) with the sidecar's content, or ("skip", reason).
    """
    try:
        frames, info, video, fps_from = decode_and_preprocess(
            path, size=size, max_frames=max_frames, min_fps=min_fps, target_fps=target_fps,
            salt=salt, manifest_fps=manifest_fps)
        record = {
            "n_frames": len(frames), "fps": float(target_fps or video.fps),
            "source_fps": float(video.fps), "fps_from": fps_from,
            "height": int(video.frames.shape[1]), "width": int(video.frames.shape[2]),
            "meta": video.meta, "preprocess": info,
        }
        npy_path = Path(npy)
        atomic_write_bytes(npy_path.with_suffix(".json"), json.dumps(record, indent=1).encode())
        atomic_write(npy_path, lambda f: np.save(f, np.ascontiguousarray(frames)))
        return "ok", record
    except VideoReadError as err:
        return "skip", err.reason
    except Exception as err:  # one bad file never stops the run
        return "skip", f"{type(err).__name__}: {err}"


def _check_cache_compatible(out: Path, cfg: IngestConfig) -> None:
    old_file = out / "ingest_config.json"
    if not old_file.is_file():
        return
    old = json.loads(old_file.read_text()).get("preprocessing", {})
    new = preprocessing_spec(cfg)
    keys = ("version", "size", "max_frames", "target_fps")
    if any(old.get(k) != new[k] for k in keys):
        raise ValueError(
            f"{out}: cache was built with {({k: old.get(k) for k in keys})}, not "
            f"{({k: new[k] for k in keys})}; ingest into another folder")


def write_cache_index(out: Path, cfg: IngestConfig, df: pd.DataFrame, records: dict,
                      skipped: list[tuple[str, str]]) -> None:
    """Write a cache's manifest.csv, ingest_report.csv and ingest_config.json.

    Args:
        out: the cache folder (its ``videos/<key>.npy`` files already written).
        cfg: the ingest settings (the salt is never written).
        df: the input manifest; ``records`` index into it.
        records: row index -> {"n_frames", "fps", "height", "width", "meta"} of each cached video.
        skipped: (path, reason) of every video that was not cached.
    """
    rows = df.loc[sorted(records)].copy()
    rows["source"] = rows["path"]
    rows["path"] = [f"videos/{video_key(s)}.npy" for s in rows["source"]]
    for column in ("n_frames", "fps", "height", "width"):
        rows[column] = [records[i][column] for i in rows.index]
    rows["_study_uid_hash"] = [records[i]["meta"].get("study_uid_hash") for i in rows.index]
    rows["_patient_id_hash"] = [records[i]["meta"].get("patient_id_hash") for i in rows.index]
    atomic_write_bytes(out / "manifest.csv", rows.to_csv(index=False).encode())
    report = pd.DataFrame(skipped, columns=["path", "reason"])
    atomic_write_bytes(out / "ingest_report.csv", report.to_csv(index=False).encode())
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "salt"}
    config |= {"salted": bool(cfg.salt), "preprocessing": preprocessing_spec(cfg)}
    atomic_write_bytes(out / "ingest_config.json", json.dumps(config, indent=2).encode())
