"""Which videos a command reads: every view (``--view all``, also from TOML), view names in any
case, a view that matches nothing named with the views the cache holds; and every split a
command uses holds both classes of its label, or the command says which lacks which, before
any training."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from echoclr.cli import build_parser, config_from_args, main
from echoclr.commands.embed import EmbedConfig
from echoclr.commands.finetune import FinetuneConfig
from echoclr.commands.predict import PredictConfig
from echoclr.commands.pretrain import PretrainConfig
from echoclr.commands.probe import ProbeConfig
from echoclr.data.cache import VideoCache
from test_user_errors import FT, one_line_error

VIEW_CONFIGS = (FinetuneConfig, ProbeConfig, PretrainConfig, PredictConfig, EmbedConfig)


def two_views(cache):
    """Give every other study the A4C view (lower case, padded: as archives spell them)."""
    manifest = pd.read_csv(cache / "manifest.csv")
    a4c = manifest["study_id"].str[1:].astype(int) % 4 >= 2
    manifest.loc[a4c, "view"] = " a4c "
    manifest.to_csv(cache / "manifest.csv", index=False)
    return manifest


@pytest.mark.parametrize("spelling", ["all", "ALL", " any", "none", "None", "", None])
def test_every_spelling_of_all_views_is_all_views(spelling):
    for cls in VIEW_CONFIGS:
        assert "view" in {f.name for f in dataclasses.fields(cls)}, cls.__name__
        assert cls(view=spelling).view is None, cls.__name__


def test_all_views_from_the_command_line_and_from_toml(tmp_path):
    args = build_parser("finetune").parse_args(["finetune", "CACHE", "--view", "all"])
    assert config_from_args(FinetuneConfig, args).view is None
    toml = tmp_path / "ft.toml"
    toml.write_text('view = "all"\n')
    args = build_parser("finetune").parse_args(["finetune", "CACHE", "--config-file", str(toml)])
    assert config_from_args(FinetuneConfig, args).view is None
    assert FinetuneConfig(view=" plax ").view == "plax"  # kept; matched in any case


def test_views_match_in_any_case_and_with_spaces(tiny_cache):
    manifest = two_views(tiny_cache)
    cache = VideoCache(tiny_cache)
    n_a4c = int((manifest["view"] == " a4c ").sum())
    assert len(cache.rows(view="A4C")) == len(cache.rows(view="a4c")) == n_a4c
    assert len(cache.rows(view="plax")) == len(manifest) - n_a4c
    assert len(cache.rows(view=None)) == len(manifest)


def test_finetune_on_all_views_reads_every_view(tiny_cache, tmp_path):
    manifest = two_views(tiny_cache)
    import json

    out = tmp_path / "ft"
    assert main(["finetune", str(tiny_cache), "--out", str(out), *FT, "--view", "all"]) == 0
    config = json.loads((out / "config.json").read_text())
    train = manifest[manifest["split"] == "train"]
    assert config["n_train_videos"] == len(train) and config["view"] is None
    assert main(["finetune", str(tiny_cache), "--out", str(out), *FT, "--view", "plax"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["n_train_videos"] == int((train["view"] == "PLAX").sum())


def test_a_view_that_matches_nothing_names_the_views_the_cache_holds(tiny_cache, tmp_path,
                                                                     capsys):
    two_views(tiny_cache)
    for command in (["finetune", str(tiny_cache), *FT], ["pretrain", str(tiny_cache)],
                    ["probe", str(tiny_cache)]):
        one_line_error(capsys, [*command, "--out", str(tmp_path / "x"), "--view", "PSAX"],
                       "'PSAX'", "PLAX", "a4c", "--view all")


def test_embed_and_predict_take_a_view(tiny_cache, tmp_path):
    import numpy as np

    from _model_fixtures import write_tiny_model

    manifest = two_views(tiny_cache)
    model = write_tiny_model(tmp_path / "model")
    assert main(["embed", str(model), str(tiny_cache), "--out", str(tmp_path / "e.npz"),
                 "--view", "A4C", "--clips", "1", "--device", "cpu"]) == 0
    assert len(np.load(tmp_path / "e.npz")["h"]) == int((manifest["view"] == " a4c ").sum())
    cfg = config_from_args(PredictConfig, build_parser("predict").parse_args(
        ["predict", str(model), "m.csv", "--view", "plax"]))
    assert cfg.view == "plax"


def test_predict_scores_only_the_manifest_rows_of_its_view(tmp_path):
    from _model_fixtures import write_tiny_model
    from _video_fixtures import echo_frames
    from echoclr.data.video import write_video

    model = write_tiny_model(tmp_path / "model")
    for k in range(3):
        write_video(tmp_path / f"v{k}.avi", echo_frames(t=12, h=48, w=64, seed=k)[0], fps=30)
    pd.DataFrame({"path": ["v0.avi", "v1.avi", "v2.avi"], "study_id": ["A", "A", "B"],
                  "view": ["PLAX", "A4C", "plax"]}).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(tmp_path / "m.csv"), "--out", str(out),
                 "--view", "PLAX"]) == 0
    videos = pd.read_csv(out).query("level == 'video'")
    assert sorted(p.rsplit("/", 1)[-1] for p in videos["path"]) == ["v0.avi", "v2.avi"]


# --- both classes in every split a command uses -------------------------------------------

def set_labels(cache, split: str, value: int, task: str = "lvh") -> None:
    manifest = pd.read_csv(cache / "manifest.csv")
    manifest.loc[manifest["split"] == split, task] = value
    manifest.to_csv(cache / "manifest.csv", index=False)


def test_finetune_refuses_a_validation_split_of_one_class_before_training(
        tiny_cache, tmp_path, capsys, no_training):
    set_labels(tiny_cache, "val", 0)
    one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"), *FT],
                   "val split", "no positive", "'lvh'")


def test_finetune_refuses_a_training_split_of_one_class_before_training(
        tiny_cache, tmp_path, capsys, no_training):
    set_labels(tiny_cache, "train", 1)
    one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"), *FT],
                   "train split", "no negative", "'lvh'")


def test_probe_refuses_a_training_split_of_one_class(tiny_cache, tmp_path, capsys):
    set_labels(tiny_cache, "train", 0)
    one_line_error(capsys, ["probe", str(tiny_cache), "--out", str(tmp_path / "p"),
                            "--encoder", "r3d_tiny", "--width", "4"],
                   "train split", "no positive", "'lvh'")


def test_evaluate_refuses_a_split_of_one_class_before_predicting(tiny_cache, tmp_path, capsys,
                                                                 monkeypatch):
    import echoclr.commands.evaluate as ev
    from _model_fixtures import write_tiny_model

    run = write_tiny_model(tmp_path / "run")

    def refuse(*args, **kwargs):
        raise AssertionError("predicted before checking the splits")

    monkeypatch.setattr(ev, "predict_videos", refuse)
    original = (tiny_cache / "manifest.csv").read_text()
    set_labels(tiny_cache, "test", 1)
    one_line_error(capsys, ["evaluate", str(run), "--cache", str(tiny_cache)],
                   "test split", "no negative", "'lvh'")
    (tiny_cache / "manifest.csv").write_text(original)
    set_labels(tiny_cache, "val", 1)
    one_line_error(capsys, ["evaluate", str(run), "--cache", str(tiny_cache)],
                   "val split", "threshold")
