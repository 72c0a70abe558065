"""The CLI, called in-process: synth → ingest → the cache feeds the datasets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from echoclr.cli import build_parser, main
from echoclr.data.cache import VideoCache
from echoclr.data.datasets import ClipDataset, StudyPairDataset


def test_synth_then_ingest_feeds_the_datasets(tmp_path):
    cohort, cache = tmp_path / "cohort", tmp_path / "cache"
    assert main(["synth", str(cohort), "--patients", "8", "--size", "48", "--frames-min", "16",
                 "--frames-max", "20", "--seed", "1"]) == 0
    manifest = pd.read_csv(cohort / "manifest.csv")
    assert {"path", "study_id", "lvh", "severe_as"} <= set(manifest.columns)
    assert main(["ingest", str(cohort / "manifest.csv"), "--out", str(cache), "--size", "24",
                 "--max-frames", "16", "--accept-one-class-splits"]) == 0
    config = json.loads((cache / "ingest_config.json").read_text())
    assert config["size"] == 24
    vc = VideoCache(cache)
    assert len(vc.manifest) == len(manifest)
    assert set(vc.manifest["split"]) <= {"train", "val", "test"}
    train = vc.rows("train", "PLAX")
    pairs = StudyPairDataset(vc, train, clip_len=4, period=2)
    item = pairs[0]
    assert item["clip_a"].shape == (4, 24, 24) and item["clip_a"].dtype == torch.uint8
    clips = ClipDataset(vc, train, clip_len=8, label="lvh", eval_clips=3)[0]
    assert clips["clip"].shape == (3, 8, 24, 24)


def test_ingest_exit_status_reports_skipped_files(tmp_path, capsys):
    (tmp_path / "bad.avi").write_text("not a video")
    (tmp_path / "m.csv").write_text("path,study_id\nbad.avi,S1\n")
    assert main(["ingest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c")]) == 1
    assert "line 2: not a readable video" in capsys.readouterr().out  # the line, not the path


def test_every_command_is_wired():
    parser = build_parser()
    for command in ("synth", "ingest", "pretrain", "finetune", "evaluate", "compare",
                    "experiment", "demo", "predict", "saliency", "embed", "export"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0


def test_config_file_sets_defaults_and_flags_override(tmp_path):
    from echoclr.cli import config_from_args
    from echoclr.commands.pretrain import PretrainConfig

    toml = tmp_path / "p.toml"
    toml.write_text('lr = 0.01\nbatch_size = 7\nmethod = "simclr"\n')
    args = build_parser().parse_args(["pretrain", "CACHE", "--config-file", str(toml),
                                      "--batch-size", "9", "--no-study-mask"])
    cfg = config_from_args(PretrainConfig, args)
    assert (cfg.cache, cfg.lr, cfg.batch_size, cfg.method, cfg.study_mask) == (
        "CACHE", 0.01, 9, "simclr", False)


def test_missing_required_setting_is_named(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,study_id\na.avi,S1\n")
    assert main(["ingest", str(tmp_path / "m.csv")]) == 2
    assert "echoclr ingest: error: missing required setting(s): --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(required)" in help_text and "MISSING" not in help_text


def test_top_level_help_imports_no_command_module():
    # `echoclr --help` must not pay for torch; a command imports only its own module.
    import subprocess
    import sys

    code = ("import sys\nfrom echoclr.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('RESULT', sorted(m for m in ('torch', 'echoclr.commands.pretrain', "
            "'echoclr.commands.finetune') if m in sys.modules))\n"
            "try:\n    main(['synth', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('RESULT', 'echoclr.commands.synth' in sys.modules, "
            "'echoclr.commands.pretrain' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert [line for line in out if line.startswith("RESULT")] == ["RESULT []",
                                                                   "RESULT True False"]


def test_every_flag_has_one_complete_help_sentence_and_its_default():
    """Help comes from the config fields' metadata: a whole sentence each (nothing cut at a line
    end), then the default exactly once (booleans too), or "(required)"."""
    import dataclasses

    from echoclr.cli import COMMANDS, command_module
    from echoclr.options import help_text

    for name, (cls_name, _, positional, _) in COMMANDS.items():
        for f in dataclasses.fields(getattr(command_module(name), cls_name)):
            text = help_text(f)
            assert text[:1].isalpha() and text.endswith("."), (name, f.name, text)
            assert "(default" not in text, (name, f.name, text)
        sub = build_parser(name)._subparsers._group_actions[0].choices[name]
        for action in sub._actions:
            if action.dest in ("help", "config_file") or action.dest in positional:
                continue
            given = action.help.count("(default: ") + action.help.count("(required)")
            assert given == 1, (name, action.dest, action.help)
    def shown(command):
        parser = build_parser(command)._subparsers._group_actions[0].choices[command]
        return " ".join(parser.format_help().split())

    assert "--augment, --no-augment Apply the paper's crop, flip and rotation to pretraining " \
           "clips. (default: True)" in shown("pretrain")
    assert "(paper: all, even at 1 %)." in shown("finetune")  # % reaches the screen as %
