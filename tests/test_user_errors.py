"""A user's mistake is one line on stderr (``echoclr COMMAND: error: MESSAGE``: what, where, the
fix) and exit status 2, never a traceback; ``echoclr --debug`` shows the traceback; a bug keeps
its traceback. Called in-process through ``echoclr.cli.main``."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest
import torch

import echoclr
from echoclr.cli import main
from echoclr.commands.demo import load_preset
from echoclr.commands.experiment import ExperimentSpec
from echoclr.errors import UserError

FT = ["--encoder", "r3d_tiny", "--width", "4", "--clip-len", "4", "--batch-size", "12",
      "--epochs", "1", "--workers", "0", "--no-progress", "--val-clips", "1",
      "--precision", "fp32"]


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI; assert exit status 2 and one error line naming every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith(f"echoclr {argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_wrong_case_task_lists_the_label_columns_and_suggests_the_right_one(
        tiny_cache, tmp_path, capsys, no_training):
    line = one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"),
                                   "--task", "LVH", *FT], "'LVH'", "lvh", "severe_as",
                          "--task lvh")
    assert "manifest.csv" in line


def test_label_free_cache_is_refused_before_training(tiny_cache, tmp_path, capsys, no_training):
    manifest = pd.read_csv(tiny_cache / "manifest.csv").drop(columns=["lvh", "severe_as"])
    manifest.to_csv(tiny_cache / "manifest.csv", index=False)
    one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"), *FT],
                   "no label column", "manifest.csv")


def test_compare_before_evaluate_says_to_run_evaluate(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    one_line_error(capsys, ["compare", str(tmp_path / "a"), str(tmp_path / "b")],
                   "study_predictions.csv", f"echoclr evaluate {tmp_path / 'a'}")


def test_cuda_without_a_gpu_is_a_user_error(tiny_cache, tmp_path, capsys, monkeypatch,
                                            no_training):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"), *FT,
                            "--device", "cuda"], "--device cuda", "--device cpu")


def test_missing_init_file_says_it_does_not_exist(tiny_cache, tmp_path, capsys, no_training):
    line = one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"),
                                   *FT, "--init", str(tmp_path / "nothere.pt")],
                          "--init", "nothere.pt", "does not exist")
    assert "sidecar" not in line


def test_kinetics_weights_with_another_init_are_refused_not_ignored(tiny_cache, tmp_path,
                                                                    capsys, no_training):
    """--weights is the Kinetics-400 file; given with a random or pretrained init it was
    silently ignored, so a "pretrained" run trained from scratch."""
    one_line_error(capsys, ["finetune", str(tiny_cache), "--out", str(tmp_path / "ft"), *FT,
                            "--weights", str(tmp_path / "encoder.pt")],
                   "--weights", "--init kinetics", "--init RUN/encoder.pt")
    one_line_error(capsys, ["probe", str(tiny_cache), "--out", str(tmp_path / "pr"),
                            "--encoder", "r3d_tiny", "--width", "4", "--clip-len", "4",
                            "--weights", "k400.pt", "--precision", "fp32"],
                   "--weights k400.pt", "--init random")


def test_unknown_config_file_key_names_the_file_and_the_key(tmp_path, capsys):
    toml = tmp_path / "ft.toml"
    toml.write_text('task = "lvh"\nlearning_rate = 0.1\n')
    one_line_error(capsys, ["finetune", "CACHE", "--config-file", str(toml)],
                   str(toml), "learning_rate", "lr")


def test_missing_config_file_and_bad_toml_are_user_errors(tmp_path, capsys):
    one_line_error(capsys, ["finetune", "CACHE", "--config-file", str(tmp_path / "no.toml")],
                   "no.toml", "does not exist")
    (tmp_path / "bad.toml").write_text("task = \n")
    one_line_error(capsys, ["finetune", "CACHE", "--config-file", str(tmp_path / "bad.toml")],
                   "bad.toml", "not valid TOML")


def test_experiment_spec_mistakes_are_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    argv = ["experiment", str(spec), "--out", str(tmp_path / "exp")]
    one_line_error(capsys, argv, "spec.toml", "does not exist")
    spec.write_text("cache = \n")
    one_line_error(capsys, argv, "spec.toml", "not valid TOML", "line 1")
    spec.write_text('cache = "c"\nfractoins = [0.1]\n')
    one_line_error(capsys, argv, "spec.toml", "unknown keys", "fractoins")
    spec.write_text('cache = "c"\n[finetune]\nlearning_rate = 0.1\n')
    one_line_error(capsys, argv, "spec.toml", "[finetune]", "learning_rate",
                   "echoclr finetune --help")
    spec.write_text('cache = "c"\n[finetune_by_init.echoclr]\nepoch = 3\n')
    one_line_error(capsys, argv, "[finetune_by_init.echoclr]", "epoch")
    assert not (tmp_path / "exp").exists()


def test_demo_preset_mistakes_are_one_line(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path / "demo"), "--preset"]
    one_line_error(capsys, [*argv, "quick"], "--preset quick", "demo, full or demo_ci", ".toml")
    one_line_error(capsys, [*argv, str(tmp_path / "mine.toml")], "mine.toml", "does not exist")
    (tmp_path / "mine.toml").write_text("patients = 40\n[synth]\nsize = 32\n")
    one_line_error(capsys, [*argv, str(tmp_path / "mine.toml")], "mine.toml", "experiment",
                   "seed", "configs/demo.toml")
    (tmp_path / "mine.toml").write_text("patients = 40\nseed = 1\n[experiment]\n[synth]\n"
                                        "szie = 32\n")
    one_line_error(capsys, [*argv, str(tmp_path / "mine.toml")], "szie", "[synth]")
    assert not (tmp_path / "demo" / "cohort").exists()


@pytest.mark.parametrize("name", ["demo", "demo_ci", "full"])
def test_every_packaged_preset_is_a_valid_design(name):
    """A typo in a packaged preset's key fails here, not minutes into a user's demo."""
    preset = load_preset(name)
    spec = ExperimentSpec.from_dict(preset["experiment"] | {"cache": "c", "seed": preset["seed"]},
                                    source=name)
    assert {"lvh", "severe_as"} <= set(spec.tasks) and "random" in spec.inits


def test_the_paper_protocol_is_a_valid_design():
    path = resources.files("echoclr") / "configs" / "paper.toml"
    spec = ExperimentSpec.from_toml(path, cache="c")
    assert spec.inits == ("random", "kinetics", "simclr", "mi-simclr", "echoclr")
    grid = [1e-4, 5e-4, 1e-5]  # the paper searched lr at <= 10 % of the labels only
    assert [spec.finetune_overrides("random", f).get("lr_grid") for f in spec.fractions] == \
        [grid, grid, grid, None, None, None, None]


def test_missing_cache_is_one_line(tmp_path, capsys):
    one_line_error(capsys, ["finetune", str(tmp_path / "nocache"), "--out",
                            str(tmp_path / "ft"), *FT], "nocache", "echoclr ingest")


def test_bad_manifest_is_one_line_listing_every_problem(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,study_id,lvh\na.avi,S1,2\na.avi,S1,2\n")
    one_line_error(capsys, ["ingest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c")],
                   "m.csv", "lines 2, 3")  # the editor's line numbers (the header is line 1)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(UserError, match="study_predictions.csv"):
        main(["--debug", "compare", str(tmp_path), str(tmp_path)])


def test_a_bug_keeps_its_traceback(tiny_cache, tmp_path, monkeypatch):
    import echoclr.commands.finetune as ft

    def bug(*args, **kwargs):
        return {}["missing key"]

    monkeypatch.setattr(ft, "finetune", bug)
    with pytest.raises(KeyError):
        main(["finetune", str(tiny_cache), "--out", str(tmp_path / "ft")])
    monkeypatch.setattr(ft, "finetune", lambda cfg: (tmp_path / "no" / "such").read_text())
    with pytest.raises(FileNotFoundError):  # the OS's, deep inside: a bug, not the user's path
        main(["finetune", str(tiny_cache), "--out", str(tmp_path / "ft")])


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"echoclr {echoclr.__version__}"


def test_failed_commands_leave_no_empty_run_folder(tiny_cache, tmp_path, capsys, no_training):
    for argv in (["finetune", str(tiny_cache), "--task", "LVH", *FT],
                 ["probe", str(tiny_cache), "--task", "LVH", "--encoder", "r3d_tiny"],
                 ["pretrain", str(tiny_cache), "--view", "A4C", "--encoder", "r3d_tiny"]):
        out = tmp_path / argv[0]
        assert main([*argv, "--out", str(out)]) == 2
        assert not out.exists(), argv[0]
    capsys.readouterr()


def test_finetune_config_records_the_pretrained_encoder_it_used(tiny_cache, tmp_path):
    from echoclr.models import build_encoder
    from echoclr.weights import save_encoder

    encoder = tmp_path / "encoder.pt"
    save_encoder(build_encoder("r3d_tiny", width=4), encoder,
                 {"encoder": "r3d_tiny", "width": 4, "clip_len": 4, "period": 1,
                  "preprocessing": {"version": 1, "size": 16, "max_frames": 100}})
    out = tmp_path / "ft"
    assert FT[:4] == ["--encoder", "r3d_tiny", "--width", "4"]
    assert main(["finetune", str(tiny_cache), "--out", str(out), *FT[4:], "--init",
                 str(encoder)]) == 0  # --encoder r3d_18, --width 16 (the defaults) did not run
    config = json.loads((out / "config.json").read_text())
    assert (config["encoder"], config["width"]) == ("r3d_tiny", 4)
