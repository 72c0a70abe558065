"""``echoclr saliency``: Grad-CAM (Selvaraju et al. 2017) of a fine-tuned classifier, per frame.

Gradients of the logit weight the channels of the encoder's last convolutional block; the ReLU
of the weighted sum is upsampled in time and space (trilinear) to one map per input frame, as
in the saliency figures of Holste et al. 2024. The maps explain the positive class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echoclr.atomic import atomic_write
from echoclr.data.cache import decode_and_preprocess
from echoclr.data.preprocess import preprocessing_of, replayable
from echoclr.data.transforms import clip_indices, evenly_spaced_clips
from echoclr.data.video import write_video
from echoclr.errors import UserError
from echoclr.inference import clips_to_input, predict_clips
from echoclr.options import device_opt, model_opt, opt
from echoclr.runs import pick_device
from echoclr.valid_json import write_json
from echoclr.weights import load_classifier, require_binary

OVERLAY_ALPHA = 0.6  # heatmap opacity where the map is 1 (it fades to the plain frame at 0)
MIN_DISPLAY_SIDE = 256  # pixels: overlay frames are enlarged (nearest) to at least this


@dataclass(frozen=True)
class SaliencyConfig:
    model: str = model_opt()
    video: str = opt("", "One DICOM, AVI or MP4 file.")
    out: str = opt("saliency", "Output folder: overlay.gif and .mp4, saliency_max.png, "
                               "saliency.npy and .json.")
    max_frames: int = opt(32, "Frames explained, from the start of the preprocessed video.")
    fps: float = opt(10.0, "Playback rate of the overlay videos, frames/s.")
    device: str = device_opt()


def target_layer(encoder: nn.Module) -> nn.Module:
    """The last convolutional block: ``layer4`` of torchvision's video ResNets, ``layers[-1]`` of
    :class:`echoclr.models.TinyR3D`."""
    if hasattr(encoder, "layer4"):
        return encoder.layer4
    if hasattr(encoder, "layers"):
        return encoder.layers[-1]
    raise ValueError(f"Grad-CAM: no known last convolutional block in {type(encoder).__name__}")


def gradcam(model: nn.Module, clip_tensor: torch.Tensor) -> np.ndarray:
    """Grad-CAM of the logit for one clip, one map per input frame.

    The encoders pool globally, so a clip of any length T goes through in one pass.

    Args:
        model: a :class:`echoclr.models.Classifier` (eval mode: dropout off, BatchNorm frozen).
        clip_tensor: scaled model input, float (3, T, H, W) or (1, 3, T, H, W).

    Returns:
        float32 (T, H, W) in [0, 1], normalised by the maximum over the whole clip (all zeros
        when nothing supports the positive class).
    """
    cam, _ = gradcam_raw(model, clip_tensor)
    return normalise(cam)


def gradcam_raw(model: nn.Module, clip_tensor: torch.Tensor) -> tuple[np.ndarray, float]:
    """Unnormalised Grad-CAM, float32 (T, H, W) >= 0, and the clip's logit."""
    x = clip_tensor if clip_tensor.dim() == 5 else clip_tensor.unsqueeze(0)
    if x.shape[0] != 1:
        raise ValueError(f"gradcam explains one clip at a time, got a batch of {x.shape[0]}")
    layer = target_layer(model.encoder)
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda module, inputs, out: store.update(a=out))
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # a graph even when the weights are frozen
            logit = model(x).sum()
            (grad,) = torch.autograd.grad(logit, store["a"])
    finally:
        handle.remove()
    activation = store["a"].detach()  # (1, C, t, h, w)
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)  # (1, C, 1, 1, 1)
    cam = torch.relu((weights * activation).sum(1, keepdim=True)).float()  # (1, 1, t, h, w)
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)
    return cam[0, 0].clamp_min(0).cpu().numpy().astype(np.float32), logit.item()


def normalise(maps: np.ndarray) -> np.ndarray:
    """Divide by the maximum (all zeros stay zeros): float32 in [0, 1]."""
    peak = float(maps.max()) if maps.size else 0.0
    return (maps / peak if peak > 0 else np.zeros_like(maps)).clip(0, 1).astype(np.float32)


def explain_window(model: nn.Module, window: np.ndarray, *, clip_len: int, period: int,
                   device: torch.device) -> tuple[np.ndarray, float]:
    """Grad-CAM for every frame of uint8 (T, H, W), at the model's frame stride.

    The frames ``o, o + period, ...`` of each offset ``o < period`` form one clip (padded with
    its last frame to at least ``clip_len``), so each frame gets its own map from a clip with
    the temporal spacing the model was trained on; maps are normalised over the whole window.

    Returns:
        float32 (T, H, W) in [0, 1], and the mean probability of the offset clips.
    """
    maps = np.zeros(window.shape, np.float32)
    logits = []
    for offset in range(min(period, len(window))):
        frames = window[offset::period]
        padded = frames[clip_indices(len(frames), max(len(frames), clip_len), 1, 0)]
        x = clips_to_input(torch.from_numpy(padded)[None].to(device))
        cam, logit = gradcam_raw(model, x)
        maps[offset::period] = cam[:len(frames)]
        logits.append(logit)
    return normalise(maps), float(torch.sigmoid(torch.tensor(logits)).mean())


def overlay_frames(frames: np.ndarray, maps: np.ndarray,
                   alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Gray frames with the jet-coloured map blended in, opacity ``alpha * map`` per pixel.

    Args:
        frames: uint8 (T, H, W).
        maps: float (T, H, W) in [0, 1].
    Returns:
        uint8 (T, H, W, 3) RGB.
    """
    from matplotlib import colormaps

    heat = colormaps["jet"](maps)[..., :3]  # (T, H, W, 3) in [0, 1]
    opacity = alpha * maps[..., None]
    rgb = (1 - opacity) * (frames[..., None] / 255.0) + opacity * heat
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def enlarge(frames: np.ndarray) -> np.ndarray:
    """Repeat pixels (nearest) so the side reaches :data:`MIN_DISPLAY_SIDE`: (T, H, W, 3)."""
    scale = max(1, -(-MIN_DISPLAY_SIDE // max(frames.shape[1:3])))
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 (T, H, W, 3) frames as a looping GIF.

    The GIF writer merges identical consecutive frames into one shown for their summed
    duration, so playback timing is exact; the MP4 beside it keeps every frame.
    """
    from PIL import Image

    path = Path(path)
    images = [Image.fromarray(f) for f in frames]
    atomic_write(path, lambda f: images[0].save(
        f, format="GIF", save_all=True, append_images=images[1:],
        duration=max(20, round(1000 / fps)), loop=0))
    return path


def plot_max_over_time(frames: np.ndarray, maps: np.ndarray, out_png: str | Path,
                       title: str) -> Path:
    """The paper's summary figure: the mean frame, and the maximum of the map over time on it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6))
    left, right = fig.subplots(1, 2)
    mean_frame = frames.mean(0)
    left.imshow(mean_frame, cmap="gray", vmin=0, vmax=255)
    left.set_title("mean frame")
    right.imshow(mean_frame, cmap="gray", vmin=0, vmax=255)
    shown = right.imshow(maps.max(0), cmap="jet", vmin=0, vmax=1, alpha=0.5)
    right.set_title("Grad-CAM, max over time")
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04)
    for ax in (left, right):
        ax.set_axis_off()
    fig.suptitle(title)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=150, bbox_inches="tight")
    return out_png


def saliency(cfg: SaliencyConfig) -> Path:
    """Explain one video: preprocess it as the training cache, Grad-CAM over its first
    ``max_frames`` frames (:func:`explain_window`: the encoders pool globally, so a whole window
    goes through as one clip per frame offset, without stitching); write the overlay as GIF and
    MP4, the max-over-time PNG, ``saliency.npy`` (float32 (T, H, W), in the model's preprocessed
    frame space) and ``saliency.json``. Returns the output folder.
    """
    if cfg.max_frames < 1:
        raise UserError(f"saliency: --max-frames must be >= 1, got {cfg.max_frames}")
    model, meta = load_classifier(cfg.model)
    require_binary(meta, cfg.model, "saliency")
    device = pick_device(cfg.device)
    model = model.to(device)
    prep = replayable(preprocessing_of(meta, cfg.model), cfg.model)
    frames = decode_and_preprocess(cfg.video, prep)[0]
    clip_len, period = meta["clip_len"], meta["period"]
    window = frames[:cfg.max_frames]  # uint8 (T, S, S)
    maps, window_probability = explain_window(model, window, clip_len=clip_len, period=period,
                                              device=device)
    k = meta["eval_clips"]
    probability = float(predict_clips(
        model, torch.from_numpy(evenly_spaced_clips(frames, clip_len, period, k))[None].to(device),
        device=device, precision="fp32")[0])
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "saliency.npy", maps)
    overlay = enlarge(overlay_frames(window, maps))
    write_gif(out / "overlay.gif", overlay, cfg.fps)
    write_video(out / "overlay.mp4", overlay, cfg.fps)
    task = meta["task"]
    plot_max_over_time(window, maps, out / "saliency_max.png",
                       f"{task}: p = {probability:.3f} ({Path(cfg.video).name})")
    info = {"video": str(cfg.video), "model": str(cfg.model), "task": task,
            "layer": next(name for name, module in model.named_modules()
                          if module is target_layer(model.encoder)),
            "n_frames": len(window),
            "size": int(window.shape[1]), "probability": probability,
            "probability_rule": f"{k} evenly spaced clips of {clip_len} frames, mean",
            "window_probability": window_probability,
            "peak_frame": int(maps.reshape(len(maps), -1).max(1).argmax()),
            "normalisation": "divided by the maximum over all frames",
            "files": ["overlay.gif", "overlay.mp4", "saliency_max.png", "saliency.npy"]}
    write_json(out / "saliency.json", info)
    return out
