"""The preprocessing record: written once by ingest, carried unchanged into encoder.json and
model.json, read by one loader (old sidecar shapes included) and checked before a model is fed."""

from __future__ import annotations

import json

import pytest

from _model_fixtures import PREPROCESSING, write_tiny_model
from echoclr.commands.embed import EmbedConfig, embed
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.data.preprocess import (
    PREPROCESSING_VERSION, Preprocessing, check_compatible, preprocessing_of,
)
from echoclr.models import build_encoder
from echoclr.weights import save_encoder

RECORD = Preprocessing(size=32, max_frames=100, min_fps=25.0, target_fps=None)
SMALL = dict(encoder="r3d_tiny", width=4, clip_len=4, batch_size=4, workers=0, progress=False)


def test_record_travels_unchanged_from_cache_to_encoder_to_model(tiny_cache, tmp_path):
    (tiny_cache / "ingest_config.json").write_text(json.dumps(
        {"size": 16, "salted": False, "preprocessing": RECORD.to_dict() | {"size": 16}}))
    record = json.loads((tiny_cache / "ingest_config.json").read_text())["preprocessing"]
    encoder = pretrain(PretrainConfig(cache=str(tiny_cache), out=str(tmp_path / "pre"),
                                      max_steps=1, period=2, log_every=1, **SMALL))
    assert json.loads(encoder.with_suffix(".json").read_text())["preprocessing"] == record
    run = finetune(FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                                  init=str(encoder), epochs=1, val_clips=1, **SMALL))
    assert json.loads((run / "model.json").read_text())["preprocessing"] == record


def test_loader_reads_the_record_and_the_old_shapes():
    assert preprocessing_of({"preprocessing": RECORD.to_dict()}, "x") == RECORD
    # Before the record had one shape: model.json held a copy of the whole ingest_config.json.
    old = preprocessing_of({"preprocessing": PREPROCESSING}, "model.json")
    assert (old.size, old.max_frames, old.min_fps, old.version) == (16, 100, 25.0, 1)
    hand_made = preprocessing_of({"size": 16, "max_frames": 100}, "ingest_config.json")
    assert (hand_made.size, hand_made.version, hand_made.min_fps) == (16, None, None)
    with pytest.raises(ValueError, match="model.json: gives no preprocessing size/max_frames"):
        preprocessing_of({"preprocessing": {"size": 16}}, "model.json")


def test_check_names_both_sources_and_ignores_an_unknown_version():
    with pytest.raises(ValueError, match=r"a\.pt expects .*'size': 32.* b\.json has .*'size': 48"):
        check_compatible(RECORD, Preprocessing(48, 100, 25.0, None), expected_from="a.pt",
                         found_from="b.json", fix="x")
    unknown = Preprocessing(32, 100, 25.0, None, version=None)
    check_compatible(RECORD, unknown, expected_from="a", found_from="b", fix="x")
    assert RECORD.version == PREPROCESSING_VERSION


def test_finetune_refuses_an_encoder_pretrained_on_another_frame_size(tiny_cache, tmp_path):
    path = tmp_path / "encoder.pt"
    save_encoder(build_encoder("r3d_tiny", width=4), path,
                 {"encoder": "r3d_tiny", "width": 4, "clip_len": 4, "period": 1,
                  "preprocessing": RECORD.to_dict()})  # 32 px; the tiny cache holds 16 px
    cfg = FinetuneConfig(cache=str(tiny_cache), out=str(tmp_path / "ft"), task="lvh",
                         init=str(path), epochs=1, **SMALL)
    with pytest.raises(ValueError) as info:
        finetune(cfg)
    message = str(info.value)
    assert "'size': 32" in message and "'size': 16" in message
    assert str(path) in message and str(tiny_cache / "ingest_config.json") in message
    assert not (tmp_path / "ft" / "model.pt").exists()


def test_embed_refuses_a_model_trained_on_another_frame_size(tiny_cache, tmp_path):
    model = write_tiny_model(tmp_path / "model", preprocessing=RECORD.to_dict())
    with pytest.raises(ValueError, match="'size': 32.*'size': 16"):
        embed(EmbedConfig(model=str(model), cache=str(tiny_cache), out=str(tmp_path / "e.npz")))
