"""Grad-CAM: one map per input frame, maps that follow a planted moving blob, and the outputs."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from _model_fixtures import tiny_classifier, write_tiny_model
from _video_fixtures import echo_frames
from echoclr.commands.saliency import SaliencyConfig, explain_window, gradcam, saliency
from echoclr.data.video import read_video, write_video
from echoclr.inference import clips_to_input
from echoclr.models import Classifier, TinyR3D


def blob_video(t: int = 16, size: int = 64, radius: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a dark background: upper left for the first half, lower right after.

    Returns:
        uint8 (t, size, size) frames and the bool (t, size, size) disc masks.
    """
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((t, size, size), bool)
    for i in range(t):
        cy, cx = (16, 16 + i / 2) if i < t // 2 else (48, 44 + (i - t // 2) / 2)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    rng = np.random.default_rng(0)
    frames = np.where(masks, 220, 0) + rng.integers(0, 10, masks.shape)
    return frames.astype(np.uint8), masks


def activation_model() -> Classifier:
    """A classifier whose logit is the mean activation of the last block: every convolution
    averages its input (positive weights, no bias) and the head weights every feature equally,
    so the evidence for the positive class is the planted bright content itself."""
    model = Classifier(TinyR3D(width=4), dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.constant_(module.weight, 1.0 / module.weight[0].numel())
    torch.nn.init.constant_(model.head.weight, 1.0 / model.encoder.feature_dim)
    torch.nn.init.zeros_(model.head.bias)
    return model.eval()


def test_one_map_per_input_frame():
    x = clips_to_input(torch.randint(0, 255, (1, 7, 24, 20), dtype=torch.uint8))
    maps = gradcam(tiny_classifier(), x)
    assert maps.shape == (7, 24, 20) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1


def test_map_follows_a_planted_moving_blob():
    frames, masks = blob_video()
    maps = gradcam(activation_model(), clips_to_input(torch.from_numpy(frames)[None]))
    assert maps.shape == frames.shape
    inside, outside = maps[masks].mean(), maps[~masks].mean()
    assert inside > 1.5 * outside, (inside, outside)  # measured 0.36 vs 0.18
    # In time too: early frames light up the upper left, late frames the lower right.
    early, late = maps[:4].mean(0), maps[-4:].mean(0)
    assert early[:32, :32].mean() > early[32:, 32:].mean()
    assert late[32:, 32:].mean() > late[:32, :32].mean()


def test_frame_stride_of_the_model_is_kept():
    """period 2: even and odd frames are explained as two clips, each with the model's stride."""
    frames, masks = blob_video()
    maps, probability = explain_window(activation_model(), frames, clip_len=4, period=2,
                                       device=torch.device("cpu"))
    assert maps.shape == frames.shape and maps.max() == 1 and 0 < probability < 1
    assert maps[0::2].any() and maps[1::2].any()
    assert maps[masks].mean() > 1.5 * maps[~masks].mean()


def test_no_positive_evidence_gives_an_all_zero_map():
    frames, _ = blob_video(t=8, size=32)
    model = activation_model()
    torch.nn.init.constant_(model.head.weight, -1.0)  # bright content now argues against
    assert not gradcam(model, clips_to_input(torch.from_numpy(frames)[None])).any()


def test_saliency_writes_overlay_png_and_maps(tmp_path):
    model = write_tiny_model(tmp_path / "model", model=activation_model())
    video = tmp_path / "v.avi"
    write_video(video, echo_frames(t=12, h=48, w=64)[0], fps=30)
    out = saliency(SaliencyConfig(model=str(model), video=str(video), out=str(tmp_path / "s"),
                                  max_frames=6, fps=5, device="cpu"))
    maps = np.load(out / "saliency.npy")
    assert maps.shape == (6, 16, 16)  # the model's preprocessing size, max_frames frames
    assert maps.max() == 1 and maps.min() >= 0
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (256, 256)
    assert read_video(out / "overlay.mp4").frames.shape == (6, 256, 256, 3)  # coloured
    assert (out / "saliency_max.png").stat().st_size > 0
    info = json.loads((out / "saliency.json").read_text())
    assert info["layer"] == "encoder.layers.3" and 0 < info["probability"] < 1
