"""embed's features against the encoder run directly, in this test, on clips cut by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from _model_fixtures import tiny_classifier, write_tiny_model
from echoclr.commands.embed import EmbedConfig, embed


def direct_features(encoder, video: np.ndarray, clip_len: int, k: int) -> np.ndarray:
    """Mean ``h`` over k evenly spaced clips (starts rounded from a linspace over the video),
    each min-max scaled to [0, 1] and repeated to 3 channels: (F,)."""
    last = len(video) - clip_len
    starts = [int(round(s)) for s in np.linspace(0, last, k)]
    clips = []
    for s in starts:
        clip = video[s:s + clip_len].astype(np.float32)
        clips.append((clip - clip.min()) / (clip.max() - clip.min()))
    x = torch.from_numpy(np.stack(clips))[:, None].repeat(1, 3, 1, 1, 1)  # (k, 3, T, H, W)
    with torch.no_grad():
        return encoder(x).mean(0).numpy()


def test_embed_features_equal_a_direct_forward_pass(tiny_cache, tmp_path):
    model = tiny_classifier(seed=3)
    run = write_tiny_model(tmp_path / "model", model=model, clip_len=4)
    out = embed(EmbedConfig(model=str(run), cache=str(tiny_cache), split="val", clips=3,
                            out=str(tmp_path / "e.npz"), precision="fp32", device="cpu",
                            batch_size=2))
    data = np.load(out)
    manifest = pd.read_csv(tiny_cache / "manifest.csv", dtype={"study_id": str})
    rows = manifest[manifest["split"] == "val"].reset_index(drop=True)
    assert list(data["path"]) == rows["path"].tolist()
    encoder = model.encoder.eval()
    expected = np.stack([direct_features(encoder, np.load(tiny_cache / p), 4, 3)
                         for p in rows["path"]])
    assert expected.std(0).mean() > 1e-3  # videos differ in feature space: a real comparison
    np.testing.assert_allclose(data["h"], expected, rtol=1e-4, atol=1e-5)
    by_study = pd.DataFrame(expected).groupby(rows["study_id"]).mean().sort_index()
    assert list(data["studies"]) == by_study.index.tolist()
    np.testing.assert_allclose(data["study_h"], by_study.to_numpy(), rtol=1e-4, atol=1e-5)
