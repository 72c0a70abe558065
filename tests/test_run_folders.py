"""A run folder's outputs always belong to its current model: writing a new model (finetune,
probe) clears what the old one's evaluation left, in the folder and in its split subfolders;
evaluate stamps what it writes with the model's fingerprint, and compare refuses outputs of a
model that is no longer there."""

from __future__ import annotations

import json

import pytest

from echoclr.cli import main
from echoclr.runs import EVALUATION_OUTPUTS, VAL_STUDIES
from echoclr.weights import file_sha256
from test_user_errors import FT, one_line_error

EVALUATE = ["--clips", "1", "--n-resamples", "20", "--precision", "fp32"]


def finetuned(cache, run, seed: int = 0):
    assert main(["finetune", str(cache), "--out", str(run), *FT, "--seed", str(seed)]) == 0
    return run


def evaluated(run, *extra):
    assert main(["evaluate", str(run), *EVALUATE, *extra]) == 0
    return run


def test_a_new_model_clears_every_output_derived_from_the_old_one(tiny_cache, tmp_path, capsys):
    run = evaluated(finetuned(tiny_cache, tmp_path / "R"))
    evaluated(run, "--split", "val", "--out", str(run / "val"))
    for name in (*EVALUATION_OUTPUTS, VAL_STUDIES, "predictions.json",
                 "study_predictions.json"):
        assert (run / name).is_file(), name
    assert (run / "val" / "study_predictions.csv").is_file()
    finetuned(tiny_cache, run, seed=1)
    left = sorted(p.name for p in run.iterdir())
    assert left == ["config.json", "log.jsonl", "model.json", "model.pt"], left
    capsys.readouterr()


def test_probe_into_an_evaluated_folder_clears_it_too(tiny_cache, tmp_path):
    run = evaluated(finetuned(tiny_cache, tmp_path / "R"), "--no-plots")
    assert main(["probe", str(tiny_cache), "--out", str(run), "--encoder", "r3d_tiny",
                 "--width", "4", "--clip-len", "4", "--clips", "1", "--precision",
                 "fp32"]) == 0
    assert not any((run / name).exists() for name in (*EVALUATION_OUTPUTS, VAL_STUDIES))


def test_evaluate_stamps_its_outputs_with_the_models_fingerprint(tiny_cache, tmp_path):
    run = finetuned(tiny_cache, tmp_path / "R")
    evaluated(run, "--no-plots", "--out", str(run / "test"))
    sha = file_sha256(run / "model.pt")
    for name in ("study_predictions.json", "predictions.json"):
        stamp = json.loads((run / "test" / name).read_text())
        assert stamp["model_sha256"] == sha and stamp["model"] == "../model.pt"
    assert json.loads((run / "test" / "metrics.json").read_text())["model_sha256"] == sha


def test_compare_refuses_outputs_of_a_replaced_model(tiny_cache, tmp_path, capsys):
    run = evaluated(finetuned(tiny_cache, tmp_path / "R"), "--no-plots")
    other = evaluated(finetuned(tiny_cache, tmp_path / "other", seed=1), "--no-plots")
    assert main(["compare", str(run), str(other), "--n-resamples", "20"]) == 0
    capsys.readouterr()
    (run / "model.pt").write_bytes((other / "model.pt").read_bytes())  # replaced by hand
    one_line_error(capsys, ["compare", str(run), str(other)],
                   str(run / "study_predictions.csv"), f"re-run echoclr evaluate {run}")


def test_compare_refuses_predictions_without_a_fingerprint(tiny_cache, tmp_path, capsys):
    run = evaluated(finetuned(tiny_cache, tmp_path / "R"), "--no-plots",
                    "--out", str(tmp_path / "R" / "test"))
    (run / "test" / "study_predictions.json").unlink()
    one_line_error(capsys, ["compare", str(run / "test"), str(run / "test")],
                   "no model fingerprint", f"re-run echoclr evaluate {run}",
                   f"--out {run / 'test'}")


@pytest.mark.parametrize("layout", ["run", "split subfolder"])
def test_compare_reads_current_outputs_in_either_layout(tiny_cache, tmp_path, capsys, layout):
    runs = [finetuned(tiny_cache, tmp_path / name, seed=k) for k, name in enumerate("ab")]
    folders = [r if layout == "run" else r / "test" for r in runs]
    for run, folder in zip(runs, folders):
        evaluated(run, "--no-plots", "--out", str(folder))
    capsys.readouterr()
    assert main(["compare", *map(str, folders), "--n-resamples", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["n_studies"] == 4
