"""Running a network over videos: the test-time protocol of Holste et al. 2024.

``k`` evenly spaced clips per video and the network's output averaged over them: probabilities
of a classifier, features ``h`` of an encoder. Videos → study is
:func:`echoclr.metrics.aggregate_by_study`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from echoclr.data.cache import VideoCache
from echoclr.data.categorical import CLASS_COLUMN
from echoclr.data.datasets import ClipDataset
from echoclr.data.transforms import minmax_scale, to_model_input
from echoclr.runs import autocast


def clips_to_input(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W) → scaled model input (B, 3, T, H, W)."""
    return to_model_input(minmax_scale(clips))


@torch.no_grad()
def clip_outputs(net: torch.nn.Module, clips: torch.Tensor, *, device: torch.device,
                 precision: str = "auto",
                 activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``net``'s output for every clip of each video.

    Args:
        net: a classifier (logits (N,)) or an encoder (features (N, F)).
        clips: uint8 (B, K, T, H, W), K clips per video.
        activation: applied to each clip's output (``torch.sigmoid``: probabilities).

    Returns:
        float32 (B, K) or (B, K, F), on the CPU.
    """
    b, k = clips.shape[:2]
    x = clips_to_input(clips.flatten(0, 1).to(device))
    with autocast(device, precision):
        out = net(x).float()
    if activation is not None:
        out = activation(out)
    return out.view(b, k, *out.shape[1:]).cpu()


def clip_average(net: torch.nn.Module, clips: torch.Tensor, *, device: torch.device,
                 precision: str = "auto",
                 activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The mean of :func:`clip_outputs` over each video's clips: (B,) or (B, F)."""
    return clip_outputs(net, clips, device=device, precision=precision,
                        activation=activation).mean(1)


def predict_clips(model: torch.nn.Module, clips: torch.Tensor, *, device: torch.device,
                  precision: str = "auto") -> np.ndarray:
    """Mean sigmoid probability over each video's clips: uint8 (B, K, T, H, W) → (B,)."""
    return clip_average(model, clips, device=device, precision=precision,
                        activation=torch.sigmoid).numpy()


def clip_average_videos(net: torch.nn.Module, cache: VideoCache, rows: pd.DataFrame, *,
                        clip_len: int, period: int, clips: int, batch_size: int = 32,
                        device: torch.device = torch.device("cpu"), precision: str = "auto",
                        workers: int = 0,
                        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        average: bool = True) -> np.ndarray:
    """:func:`clip_average` for every video of ``rows`` (``clips`` evenly spaced clips each);
    with ``average=False`` :func:`clip_outputs`, one entry per clip.

    Returns:
        float32 (N,) or (N, F) — (N, K) or (N, K, F) unaveraged — in the order of ``rows``.
    """
    net.eval()
    ds = ClipDataset(cache, rows, clip_len=clip_len, period=period, eval_clips=clips)
    out = None
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        values = clip_outputs(net, batch["clip"], device=device, precision=precision,
                              activation=activation)
        values = (values.mean(1) if average else values).numpy()
        if out is None:
            out = np.empty((len(ds), *values.shape[1:]), values.dtype)
        out[batch["index"].numpy()] = values
    return out if out is not None else np.empty((0,), np.float32)


def predict_videos(model: torch.nn.Module, cache: VideoCache, rows: pd.DataFrame, *,
                   label: str | None, clip_len: int, period: int, clips: int = 4,
                   batch_size: int = 32, device: torch.device = torch.device("cpu"),
                   precision: str = "auto", workers: int = 0) -> pd.DataFrame:
    """One row per video: study_id, path, y_true, y_score (``clips`` evenly spaced clips)."""
    scores = clip_average_videos(model, cache, rows, clip_len=clip_len, period=period,
                                 clips=clips, batch_size=batch_size, device=device,
                                 precision=precision, workers=workers, activation=torch.sigmoid)
    rows = rows.reset_index(drop=True)
    out = rows[["study_id", "path"]].copy()
    out["y_true"] = pd.to_numeric(rows[label], errors="coerce") if label else np.nan
    out["y_score"] = scores.astype(np.float64)
    return out


def predict_video_classes(model: torch.nn.Module, cache: VideoCache, rows: pd.DataFrame, *,
                          classes: tuple[str, ...], clip_len: int, period: int, clips: int = 4,
                          batch_size: int = 32, device: torch.device = torch.device("cpu"),
                          precision: str = "auto", workers: int = 0) -> pd.DataFrame:
    """A multi-class model's :func:`predict_videos`: the softmax probabilities averaged over
    ``clips`` evenly spaced clips of each video.

    ``rows`` carry :data:`~echoclr.data.categorical.CLASS_COLUMN` (a video's class index, -1:
    unlabeled) when labeled.

    Returns:
        One row per video: study_id, path, y_true (class index, -1: unlabeled), y_pred (the
        most probable class's name), p_<class> for each class (rows sum to 1).
    """
    proba = clip_average_videos(model, cache, rows, clip_len=clip_len, period=period,
                                clips=clips, batch_size=batch_size, device=device,
                                precision=precision, workers=workers,
                                activation=lambda logits: torch.softmax(logits, dim=-1))
    proba = proba.reshape(len(rows), len(classes)).astype(np.float64)
    rows = rows.reset_index(drop=True)
    out = rows[["study_id", "path"]].copy()
    out["y_true"] = rows[CLASS_COLUMN].to_numpy(int) if CLASS_COLUMN in rows else -1
    out["y_pred"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] if len(rows) else []
    for k, name in enumerate(classes):
        out[f"p_{name}"] = proba[:, k]
    return out


def class_probabilities(predictions: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
    """The (N, K) ``p_<class>`` columns of :func:`predict_video_classes`."""
    return predictions[[f"p_{name}" for name in classes]].to_numpy(np.float64)
