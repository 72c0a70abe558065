"""Running a classifier over cached videos: the test-time protocol of Holste et al. 2024.

``k`` evenly spaced clips per video, probabilities averaged → video; videos averaged → study.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from echoclr.data.datasets import ClipDataset, VideoCache
from echoclr.data.transforms import minmax_scale, to_model_input
from echoclr.runs import autocast


def clips_to_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W) → scaled model input (B, 3, T, H, W)."""
    return to_model_input(minmax_scale(clips))


@torch.no_grad()
def predict_clips(model: torch.nn.Module, clips: torch.Tensor, *, device: torch.device,
                  precision: str = "auto") -> np.ndarray:
    """Mean sigmoid probability over each video's clips: uint8 (B, K, T, H, W) → (B,)."""
    b, k = clips.shape[:2]
    x = clips_to_input(clips.flatten(0, 1).to(device))
    with autocast(device, precision):
        logits = model(x).float()
    return torch.sigmoid(logits).view(b, k).mean(1).cpu().numpy()


@torch.no_grad()
def predict_videos(model: torch.nn.Module, cache: VideoCache, rows: pd.DataFrame, *,
                   label: str | None, clip_len: int, period: int, clips: int = 4,
                   batch_size: int = 32, device: torch.device = torch.device("cpu"),
                   precision: str = "auto", workers: int = 0) -> pd.DataFrame:
    """One row per video: study_id, path, y_true, y_score (``clips`` evenly spaced clips)."""
    model.eval()
    ds = ClipDataset(cache, rows, clip_len=clip_len, period=period, label=label, eval_clips=clips)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    scores = np.empty(len(ds), dtype=np.float64)
    for batch in loader:
        scores[batch["index"].numpy()] = predict_clips(
            model, batch["clip"], device=device, precision=precision)
    out = ds.rows[["study_id", "path"]].copy()
    out["y_true"] = pd.to_numeric(ds.rows[label], errors="coerce") if label else np.nan
    out["y_score"] = scores
    return out
