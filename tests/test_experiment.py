"""The experiment end to end on a tiny cache: cells, resume, results, report, plot."""

from __future__ import annotations

import json

import pandas as pd

from echoclr.commands.experiment import ExperimentConfig, run_experiment


def write_spec(path, cache):
    path.write_text(f"""
cache = "{cache}"
tasks = ["lvh"]
fractions = [0.5, 1.0]
inits = ["random", "echoclr"]
[pretrain]
encoder = "r3d_tiny"
width = 4
batch_size = 4
max_steps = 2
workers = 0
progress = false
period = 2
[finetune]
encoder = "r3d_tiny"
width = 4
clip_len = 4
batch_size = 4
epochs = 2
workers = 0
progress = false
eval_clips = 2
[evaluate]
n_resamples = 50
clips = 2
""")
    return path


def test_experiment_runs_every_cell_and_resumes(tiny_cache, tmp_path):
    spec = write_spec(tmp_path / "exp.toml", tiny_cache)
    out = tmp_path / "exp"
    report = run_experiment(ExperimentConfig(config=str(spec), out=str(out)))
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4  # 2 inits x 2 fractions
    assert set(results["init"]) == {"random", "echoclr"}
    assert results["auroc"].between(0, 1).all()
    assert (results["ci_low"] <= results["auroc"]).all()
    text = report.read_text()
    assert "| echoclr |" in text and "| random |" in text and "DeLong" in text
    assert (out / "label_efficiency.png").stat().st_size > 1000
    delong = pd.read_csv(out / "delong.csv")
    assert set(delong["versus"]) == {"random"} and delong["p_value"].between(0, 1).all()
    # A re-run skips finished cells and pretraining: nothing is rewritten.
    done = sorted(out.glob("*/*/*/done.json"))
    stamps = {p: p.stat().st_mtime_ns for p in done}
    encoder_stamp = (out / "pretrain/echoclr/encoder.pt").stat().st_mtime_ns
    run_experiment(ExperimentConfig(config=str(spec), out=str(out)))
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert (out / "pretrain/echoclr/encoder.pt").stat().st_mtime_ns == encoder_stamp
    cell = json.loads(done[0].read_text())
    assert cell["n_train_studies"] >= 2
