"""Frozen encoder features of a cache's videos, computed once and kept on disk.

The probe readout fits on them for every task, label fraction and draw, so an encoder runs over
a cache once. A store folder holds one file per (encoder weights, cache, clip protocol,
precision), named by a hash of all four::

    STORE/<key>.npz     path (N,) the cache's video paths; h float32 (N, K, F): the features of
                        each video's K evenly spaced clips
    STORE/<key>.json    what the key was made of (encoder, cache, clip_len, period, clips, ...)
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from echoclr.atomic import atomic_write_bytes
from echoclr.data.cache import VideoCache
from echoclr.inference import clip_average_videos
from echoclr.runs import resolve_precision
from echoclr.valid_json import json_text, write_json


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-256 of an encoder's weights and buffers (names, shapes and values), 16 hex digits:
    the same for the same weights however they were made (a file, a seed)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def cache_fingerprint(cache: VideoCache) -> str:
    """SHA-256 of a cache's manifest and ingest settings, 16 hex digits."""
    digest = hashlib.sha256((cache.root / "manifest.csv").read_bytes())
    if cache.config_path.is_file():
        digest.update(cache.config_path.read_bytes())
    return digest.hexdigest()[:16]


def clip_features(encoder: nn.Module, cache: VideoCache, rows: pd.DataFrame, *, clip_len: int,
                  period: int, clips: int, store: str | Path | None = None,
                  device: torch.device = torch.device("cpu"), precision: str = "auto",
                  batch_size: int = 32) -> np.ndarray:
    """Per-clip features ``h`` of ``rows``' videos: float32 (N, clips, F), in ``rows`` order.

    With ``store``, the features of every video of the cache are computed once per encoder and
    protocol, written there, and read back on later calls (any subset of rows).
    """
    def compute(subset: pd.DataFrame) -> np.ndarray:
        return clip_average_videos(encoder, cache, subset, clip_len=clip_len, period=period,
                                   clips=clips, batch_size=batch_size, device=device,
                                   precision=precision, average=False)

    if store is None:
        return compute(rows)
    key = {"encoder": encoder_fingerprint(encoder), "cache": cache_fingerprint(cache),
           "clip_len": clip_len, "period": period, "clips": clips,
           "precision": resolve_precision(precision, device)}
    name = hashlib.sha256(json_text(key, indent=None, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(store) / f"{name}.npz"
    if path.is_file():
        data = np.load(path)
        paths, h = data["path"], data["h"]
    else:
        every = cache.rows()
        h = compute(every)
        paths = every["path"].to_numpy(str)
        buffer = io.BytesIO()
        np.savez(buffer, path=paths, h=h)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        write_json(path.with_suffix(".json"), key | {"n_videos": len(paths)})
    index = pd.Series(np.arange(len(paths)), index=paths)
    missing = set(rows["path"]) - set(index.index)
    if missing:
        raise ValueError(f"{path}: no features for {len(missing)} videos of the cache "
                         f"(e.g. {sorted(missing)[0]}); delete the file to recompute")
    return h[index.loc[rows["path"].to_numpy(str)].to_numpy()]
