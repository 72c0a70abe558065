"""The experiment end to end on a tiny cache: cells per draw and readout, the same labeled
studies for every init at a draw, pooled.csv, resume, report, plot."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from echoclr.cli import main
from echoclr.commands.experiment import ExperimentConfig, ExperimentSpec, run_experiment
from echoclr.errors import UserError
from echoclr.report import ONE_ENCODER

POOLED_COLUMNS = ["task", "split", "fraction", "n_labeled_studies", "init", "readout",
                  "n_draws", "auroc_mean", "auroc_sd", "versus", "delta_mean", "draws_won",
                  "p_pooled"]


def write_spec(path, cache, readouts=("probe", "finetune", "lpft")):
    path.write_text(f"""
cache = "{cache}"
tasks = ["lvh"]
fractions = [0.5, 1.0]
draws = 2
finetune_draws = 2
inits = ["random", "echoclr"]
readouts = {json.dumps(list(readouts))}
[pretrain]
encoder = "r3d_tiny"
width = 4
batch_size = 4
max_steps = 2
workers = 0
progress = false
period = 2
[probe]
encoder = "r3d_tiny"
width = 4
clip_len = 4
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


def test_experiment_runs_every_cell_pools_the_draws_and_resumes(tiny_cache, tmp_path):
    spec = write_spec(tmp_path / "exp.toml", tiny_cache)
    out = tmp_path / "exp"
    report = run_experiment(ExperimentConfig(config=str(spec), out=str(out)))
    results = pd.read_csv(out / "results.csv")
    # 0.5: 2 draws x (random: probe, finetune; echoclr: probe, finetune, lpft); 1.0: one draw.
    assert len(results) == 2 * 5 + 5
    assert set(results["readout"]) == {"probe", "finetune", "lpft"}
    assert not ((results["init"] == "random") & (results["readout"] == "lpft")).any()
    assert results["auroc"].between(0, 1).all()
    # At one draw every init and readout learned from the same labeled studies.
    for (fraction, draw), cells in results.groupby(["fraction", "draw"]):
        shas = {json.loads((out / run / "config.json").read_text())["train_studies_sha256"]
                for run in cells["run"]}
        assert len(shas) == 1, (fraction, draw)
    draws = {f: set(results.loc[results["fraction"] == f, "draw"]) for f in (0.5, 1.0)}
    assert draws == {0.5: {0, 1}, 1.0: {0}}

    pooled = pd.read_csv(out / "pooled.csv")
    assert set(POOLED_COLUMNS) <= set(pooled.columns)
    half = pooled[pooled["fraction"] == 0.5].set_index(["init", "readout"])
    assert half.loc[("echoclr", "probe"), "versus"] == "random/probe"
    assert half.loc[("echoclr", "probe"), "n_draws"] == 2
    assert pd.isna(half.loc[("echoclr", "lpft"), "versus"])  # random has no LP-FT
    assert pd.isna(half.loc[("random", "probe"), "versus"])  # the reference itself
    best = half.loc[("echoclr", "best")]
    assert best["chosen"] in {"probe", "finetune", "lpft"}
    assert best["versus"].startswith("random/best")
    compared = pooled[pooled["p_pooled"].notna()]
    assert len(compared) and compared["p_pooled"].between(0, 1).all()
    # The pooled mean is the mean of the per-draw AUROCs in results.csv.
    probe_half = results[(results["init"] == "echoclr") & (results["readout"] == "probe")
                         & (results["fraction"] == 0.5)]
    assert half.loc[("echoclr", "probe"), "auroc_mean"] == pytest.approx(
        probe_half["auroc"].mean())

    text = report.read_text()
    assert text.index("## Verdict") < text.index("## lvh — test")
    assert "on the validation studies" in text  # the selection rule is written down
    assert "Training steps skipped for a non-finite loss or gradient: none." in text
    # All labels are one draw: its p is flagged as covering the test studies only.
    full = pooled[(pooled["fraction"] == 1.0) & (pooled["readout"] == "best")
                  & pooled["versus"].notna()]
    assert (full["n_compared_draws"] == 1).all() and full["note"].str.startswith("one label").all()
    verdict = text[text.index("## Verdict"):text.index("## lvh — test")]
    assert verdict.count(" † |") == len(full) and "† One training run per init" in verdict
    # EchoCLR's rows rest on one pretraining run, which no label draw re-runs: said so.
    compared = pooled[(pooled["readout"] == "best") & pooled["versus"].notna()]
    assert verdict.count(") ‡ |") == (compared["init"] == "echoclr").sum() > 0
    assert ONE_ENCODER in verdict
    assert not str(half.loc[("echoclr", "best"), "note"]).startswith("one label")  # 2 draws
    assert (out / "label_efficiency.png").stat().st_size > 1000
    # A re-run skips finished cells and pretraining: nothing is rewritten.
    done = sorted(out.glob("*/*/*/*/done.json"))
    assert len(done) == 15
    stamps = {p: p.stat().st_mtime_ns for p in done}
    encoder_stamp = (out / "pretrain/echoclr/encoder.pt").stat().st_mtime_ns
    run_experiment(ExperimentConfig(config=str(spec), out=str(out)))
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert (out / "pretrain/echoclr/encoder.pt").stat().st_mtime_ns == encoder_stamp


def test_pretraining_per_draw_gives_each_label_draw_its_own_encoder(tiny_cache, tmp_path):
    """With pretrain_per_draw, draw d of EchoCLR reads the encoder pretrained with seed + d, so
    the draws sample pretraining's noise; the report drops the one-encoder caveat."""
    spec = write_spec(tmp_path / "spec.toml", tiny_cache, readouts=("probe",))
    spec.write_text(spec.read_text().replace("fractions = [0.5, 1.0]", "fractions = [0.5]")
                    .replace("draws = 2\n", "draws = 2\npretrain_per_draw = true\n", 1)
                    .replace("max_steps = 2", "max_steps = 1"))
    out = tmp_path / "exp"
    run_experiment(ExperimentConfig(config=str(spec), out=str(out)))
    runs = {k: out / "pretrain" / name for k, name in enumerate(("echoclr", "echoclr_draw1"))}
    seeds = [json.loads((run / "config.json").read_text())["seed"] for run in runs.values()]
    assert seeds == [0, 1]
    for draw, run in runs.items():
        cell = json.loads((out / f"lvh/echoclr/probe/frac0.5_draw{draw}/config.json").read_text())
        assert cell["init"] == str(run / "encoder.pt")
    text = (out / "report.md").read_text()
    assert "one pretraining run per label draw" in text and ONE_ENCODER not in text
    assert " ‡ |" not in text
    with pytest.raises(UserError, match="pretrain_per_draw must be true or false"):
        ExperimentSpec.from_dict({"cache": str(tiny_cache), "pretrain_per_draw": "yes"})


def test_spec_checks_readouts_and_draws(tmp_path):
    base = {"cache": str(tmp_path)}
    with pytest.raises(ValueError, match="unknown readouts"):
        ExperimentSpec.from_dict(base | {"readouts": ["linear"]})
    with pytest.raises(ValueError, match="finetune_draws"):
        ExperimentSpec.from_dict(base | {"draws": 2, "finetune_draws": 3})
    spec = ExperimentSpec.from_dict(base | {"draws": 20, "finetune_draws": 5,
                                            "readouts": ["probe", "lpft"],
                                            "readouts_by_init": {"random": ["probe"]}})
    assert spec.draws_of(0.1, "probe") == 20 and spec.draws_of(0.1, "lpft") == 5
    assert spec.draws_of(1.0, "probe") == 1  # the whole training set is one subset
    assert spec.readouts_of("random") == ("probe",)
    assert spec.readouts_of("echoclr") == ("probe", "lpft")
    only = ExperimentSpec.from_dict(base | {"only_at": {"echoclr/finetune": [1.0]}})
    assert only.draws_of(0.1, "finetune", "echoclr") == 0
    assert only.draws_of(1.0, "finetune", "echoclr") == 1
    assert only.draws_of(0.1, "finetune", "random") == 5
    with pytest.raises(ValueError, match="unknown only_at"):
        ExperimentSpec.from_dict(base | {"only_at": {"echoclr/linear": [1.0]}})
    np.testing.assert_equal(spec.fractions, (0.01, 0.05, 0.1, 0.25, 0.5, 1.0))


def test_probe_cells_are_fitted_and_scored_in_the_precision_they_are_given(tiny_cache, tmp_path):
    """bf16 probe features and bf16 evaluation: no cell is scored from fp32 features, and the
    report names each stage's precision (the fit and the scores once used different ones)."""
    spec = write_spec(tmp_path / "spec.toml", tiny_cache, readouts=("probe",))
    text = spec.read_text().replace("[probe]\n", '[probe]\nprecision = "bf16"\n')
    # Pretraining in fp32 whatever the machine (auto is bf16 on an AMX CPU): the stages differ,
    # so the report names each.
    spec.write_text(text.replace("[evaluate]\n", '[evaluate]\nprecision = "bf16"\n')
                    .replace("[pretrain]\n", '[pretrain]\nprecision = "fp32"\n')
                    .replace("fractions = [0.5, 1.0]", "fractions = [1.0]"))
    out = tmp_path / "exp"
    assert main(["experiment", str(spec), "--out", str(out)]) == 0
    stores = [json.loads(p.read_text()) for p in (out / "features").glob("*.json")]
    assert stores and {s["precision"] for s in stores} == {"bf16"}
    assert "probe features bf16, evaluation bf16" in (out / "report.md").read_text()


@pytest.fixture
def cell_config(tmp_path, monkeypatch):
    """``config_of(spec, init, fraction, readout)``: the FinetuneConfig or ProbeConfig that
    ``run_cell`` hands to fine-tuning or the probe, caught before anything trains."""
    import echoclr.commands.experiment as experiment

    class Stop(Exception):
        pass

    def stop(cfg):
        raise Stop(cfg)

    monkeypatch.setattr(experiment, "finetune", stop)
    monkeypatch.setattr(experiment, "probe", stop)

    def config_of(spec, init, fraction, readout):
        with pytest.raises(Stop) as caught:
            experiment.run_cell(spec, tmp_path, {}, "lvh", fraction, 0, init, readout)
        return caught.value.args[0]
    return config_of


def test_a_shared_kinetics_weights_file_reaches_only_the_kinetics_cells(tmp_path, cell_config):
    """`[finetune] weights` / `[probe] weights` name the Kinetics-400 file; the random and
    pretrained cells of the same spec must not get it (finetune and probe refuse it there)."""
    spec = ExperimentSpec.from_dict({"cache": str(tmp_path), "inits": ["random", "kinetics"],
                                     "finetune": {"weights": "k400.pt"},
                                     "probe": {"weights": "k400.pt"}})
    given = {}
    for init in ("random", "kinetics"):
        for readout in ("finetune", "probe"):
            cfg = cell_config(spec, init, 1.0, readout)
            given[cfg.init, type(cfg).__name__] = cfg.weights
    assert given == {("random", "FinetuneConfig"): None, ("random", "ProbeConfig"): None,
                     ("kinetics", "FinetuneConfig"): "k400.pt",
                     ("kinetics", "ProbeConfig"): "k400.pt"}


def test_finetune_settings_by_fraction_sit_between_shared_and_per_init(tmp_path, cell_config):
    spec = ExperimentSpec.from_toml(_toml(tmp_path / "s.toml", f"""
cache = "{tmp_path}"
fractions = [0.2, 1.0]
inits = ["random", "kinetics"]
[finetune]
epochs = 16
lr = 1e-3
[finetune_by_fraction."1.0"]
epochs = 32
[finetune_by_init.kinetics]
lr = 1e-4
"""))
    given = {}
    for init in ("random", "kinetics"):
        for fraction in (0.2, 1.0):
            cfg = cell_config(spec, init, fraction, "finetune")
            given[cfg.init, cfg.fraction] = (cfg.epochs, cfg.lr)
    assert given == {("random", 0.2): (16, 1e-3), ("random", 1.0): (32, 1e-3),
                     ("kinetics", 0.2): (16, 1e-4), ("kinetics", 1.0): (32, 1e-4)}


@pytest.mark.parametrize("table, message", [
    ('[finetune_by_fraction."0.5"]\nepochs = 3', "not one of the fractions"),
    ('[finetune_by_fraction.all]\nepochs = 3', "not a number"),
    ('[finetune_by_fraction."1.0"]\nepoch = 3', "[finetune_by_fraction.1.0] has unknown keys"),
])
def test_finetune_by_fraction_mistakes_name_the_table(tmp_path, table, message):
    path = _toml(tmp_path / "s.toml", f'cache = "c"\nfractions = [0.2, 1.0]\n{table}\n')
    with pytest.raises(UserError, match=re.escape(message)):
        ExperimentSpec.from_toml(path)


def _toml(path, text: str):
    path.write_text(text)
    return path
