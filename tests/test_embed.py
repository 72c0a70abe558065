"""embed: features per video and study from a fine-tuned model or a pretraining encoder.pt."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _model_fixtures import PREPROCESSING, tiny_classifier, write_tiny_model
from echoclr.commands.embed import EmbedConfig, embed
from echoclr.weights import save_encoder


def test_npz_has_video_rows_study_means_and_a_plot(tiny_cache, tmp_path):
    model = write_tiny_model(tmp_path / "model")
    out = embed(EmbedConfig(model=str(model), cache=str(tiny_cache), out=str(tmp_path / "e.npz"),
                            clips=2, device="cpu"))
    data = np.load(out)  # no pickled objects: strings are fixed-width unicode
    manifest = pd.read_csv(tiny_cache / "manifest.csv")
    assert data["h"].shape == (len(manifest), 32)  # r3d_tiny width 4: feature_dim 8 * 4
    assert list(data["path"]) == manifest["path"].tolist()
    np.testing.assert_array_equal(data["label"], manifest["lvh"])  # default: the model's task
    assert data["study_h"].shape == (manifest["study_id"].nunique(), 32)
    first = data["studies"][0]
    np.testing.assert_allclose(data["study_h"][0], data["h"][data["study_id"] == first].mean(0),
                               rtol=1e-6)
    assert (tmp_path / "e.png").stat().st_size > 0
    info = json.loads((tmp_path / "e.npz.json").read_text())
    assert info["label"] == "lvh" and len(info["explained_variance_ratio"]) == 2


def test_pretraining_encoder_gives_the_same_features_as_parquet(tiny_cache, tmp_path):
    model = tiny_classifier()
    run = write_tiny_model(tmp_path / "model", model=model)
    save_encoder(model.encoder, tmp_path / "encoder.pt",
                 {"encoder": "r3d_tiny", "width": 4, "clip_len": 4, "period": 1,
                  "preprocessing": PREPROCESSING})
    common = {"cache": str(tiny_cache), "split": "test", "clips": 2, "device": "cpu"}
    ref = np.load(embed(EmbedConfig(model=str(run), out=str(tmp_path / "a.npz"), **common)))
    out = embed(EmbedConfig(model=str(tmp_path / "encoder.pt"), label="severe_as",
                            out=str(tmp_path / "b.parquet"), **common))
    table = pd.read_parquet(out)
    videos, studies = table[table["level"] == "video"], table[table["level"] == "study"]
    features = [c for c in table.columns if c.startswith("h_")]
    assert len(features) == 32 and len(videos) == len(ref["h"]) and len(studies) == 4
    np.testing.assert_allclose(videos[features].to_numpy(), ref["h"], rtol=1e-5, atol=1e-6)
    assert set(videos["split"]) == {"test"} and videos["label"].isin([0, 1]).all()


def test_unknown_label_column_is_refused(tiny_cache, tmp_path):
    model = write_tiny_model(tmp_path / "model")
    with pytest.raises(ValueError, match="no column 'ef'"):
        embed(EmbedConfig(model=str(model), cache=str(tiny_cache), label="ef",
                          out=str(tmp_path / "e.npz")))
