"""The label-efficiency experiment: AUROC against label fraction, per initialisation.

A TOML file names the cache, the tasks, fractions, seeds and inits, and overrides of the
pretraining/fine-tuning configs. Each SSL method is pretrained once; every cell
(init × task × fraction × seed) is fine-tuned and evaluated; finished work is skipped on re-run.
Outputs: results.csv, report.md (the paper's table shape + DeLong tests), label_efficiency.png.
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from echoclr.atomic import atomic_write_text
from echoclr.commands.compare import compare_runs
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.options import opt
from echoclr.pretraining import METHODS

INITS = ("random", "kinetics", *METHODS)


@dataclass(frozen=True)
class ExperimentConfig:
    config: str = opt("", "Experiment TOML file (see src/echoclr/configs/*.toml).")
    out: str = opt("runs/experiment", "Output folder.")
    cache: str | None = opt(None, "Cache folder, overriding the TOML's.")
    shard: str = opt("0/1", "i/n runs every n-th cell starting at cell i, to spread the cells "
                            "over processes or GPUs.")
    report_only: bool = opt(False, "Only collect the finished cells into the results, report "
                                   "and plot.")


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment runs: from a TOML file (`from_toml`) or a demo preset (`from_dict`)."""

    cache: str
    tasks: tuple[str, ...] = ("lvh", "severe_as")
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    seeds: tuple[int, ...] = (0,)
    inits: tuple[str, ...] = ("random", "echoclr")
    splits: tuple[str, ...] = ("test",)
    reference: str = "echoclr"  # DeLong tests compare this init with every other
    pretrain: dict = field(default_factory=dict)  # PretrainConfig overrides
    finetune: dict = field(default_factory=dict)  # FinetuneConfig overrides
    finetune_by_init: dict = field(default_factory=dict)  # {init: overrides} on top of finetune
    evaluate: dict = field(default_factory=dict)  # EvaluateConfig overrides

    @classmethod
    def from_toml(cls, path: str | Path, cache: str | None = None) -> ExperimentSpec:
        """The spec a TOML file describes (``cache``, when given, overrides its cache)."""
        data = tomllib.loads(Path(path).read_text())
        return cls.from_dict(data | ({"cache": cache} if cache else {}), source=path)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | Path = "experiment") -> ExperimentSpec:
        """The spec of a parsed TOML table (lists become tuples), checked.

        Raises:
            ValueError: naming ``source``, for no cache, unknown keys or unknown inits.
        """
        if not data.get("cache"):
            raise ValueError(f"{source}: no `cache` given (set it in the file or pass --cache)")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
        bad = set(data.get("inits", ())) - set(INITS)
        if bad:
            raise ValueError(f"{source}: unknown inits {sorted(bad)}; choose from {INITS}")
        data = {k: tuple(v) if k in ("tasks", "fractions", "seeds", "inits", "splits") else v
                for k, v in data.items()}
        return cls(**data)


def cell_name(init: str, task: str, fraction: float, seed: int) -> str:
    return f"{task}/{init}/frac{fraction:g}_seed{seed}"


def pretrain_all(spec: ExperimentSpec, out: Path) -> dict[str, Path]:
    """Pretrain each requested SSL method once (resuming a killed run); returns encoder paths."""
    encoders = {}
    for method in [i for i in spec.inits if i in METHODS]:
        run = out / "pretrain" / method
        encoder = run / "encoder.pt"
        if not encoder.is_file():
            cfg = PretrainConfig(**(spec.pretrain | {"cache": spec.cache, "out": str(run),
                                                     "method": method, "resume": True}))
            encoder = pretrain(cfg)
        encoders[method] = encoder
    return encoders


def run_cell(spec: ExperimentSpec, out: Path, encoders: dict, init: str, task: str,
             fraction: float, seed: int) -> Path:
    """Fine-tune and evaluate one cell unless its ``done.json`` exists."""
    run = out / cell_name(init, task, fraction, seed)
    if (run / "done.json").is_file():
        return run
    overrides = spec.finetune | spec.finetune_by_init.get(init, {})
    init_arg = str(encoders[init]) if init in encoders else init
    cfg = FinetuneConfig(**(overrides | {"cache": spec.cache, "out": str(run), "task": task,
                                         "init": init_arg, "fraction": fraction, "seed": seed,
                                         # each seed draws its own labeled subset, shared by
                                         # every init at that seed
                                         "fraction_seed": seed}))
    tic = time.perf_counter()
    finetune(cfg)
    for split in spec.splits:
        evaluate_run(EvaluateConfig(**(spec.evaluate | {"run": str(run), "split": split,
                                                        "out": str(run / split)})))
    n_studies = json.loads((run / "config.json").read_text())["n_train_studies"]
    atomic_write_text(run / "done.json", json.dumps(
        {"init": init, "task": task, "fraction": fraction, "seed": seed,
         "n_train_studies": n_studies, "seconds": round(time.perf_counter() - tic, 1)}))
    return run


def collect_results(spec: ExperimentSpec, out: Path) -> pd.DataFrame:
    """One row per finished (cell, split) with AUROC/AUPRC and CIs."""
    rows = []
    for done in sorted(out.glob("*/*/*/done.json")):
        cell = json.loads(done.read_text())
        for split in spec.splits:
            metrics_file = done.parent / split / "metrics.json"
            if not metrics_file.is_file():
                continue
            m = json.loads(metrics_file.read_text())["study"]
            rows.append(cell | {
                "split": split, "run": str(done.parent.relative_to(out)),
                "auroc": m["auroc"]["value"], "ci_low": m["auroc"]["ci_low"],
                "ci_high": m["auroc"]["ci_high"], "auprc": m["auprc"]["value"],
                "auprc_ci_low": m["auprc"]["ci_low"], "auprc_ci_high": m["auprc"]["ci_high"],
                "balanced_accuracy": m["balanced_accuracy"]["value"], "n_test_studies": m["n"]})
    return pd.DataFrame(rows)


def delong_rows(spec: ExperimentSpec, out: Path, results: pd.DataFrame) -> pd.DataFrame:
    """DeLong p of the reference init against every other init, per task/fraction/seed/split."""
    rows = []
    if results.empty:
        return pd.DataFrame(rows)
    ref = results[results["init"] == spec.reference]
    for _, r in ref.iterrows():
        peers = results[(results["task"] == r["task"]) & (results["fraction"] == r["fraction"])
                        & (results["seed"] == r["seed"]) & (results["split"] == r["split"])
                        & (results["init"] != spec.reference)]
        for _, p in peers.iterrows():
            row = {"task": r["task"], "split": r["split"], "fraction": r["fraction"],
                   "seed": r["seed"], "versus": p["init"], "delta_auroc": float("nan"),
                   "p_value": float("nan"), "note": ""}
            try:
                cmp = compare_runs(out / r["run"] / r["split"], out / p["run"] / p["split"])
                row |= {"delta_auroc": cmp["delong"]["delta"], "p_value": cmp["delong"]["p_value"]}
            except ValueError as err:  # e.g. fewer than 2 test studies of a class
                row["note"] = str(err)
            rows.append(row)
    return pd.DataFrame(rows)


def run_experiment(cfg: ExperimentConfig) -> Path:
    """Run (this shard of) the experiment a TOML file describes; returns report.md."""
    spec = ExperimentSpec.from_toml(cfg.config, cfg.cache)
    return run_spec(spec, Path(cfg.out), shard=cfg.shard, report_only=cfg.report_only)


def run_spec(spec: ExperimentSpec, out: Path, *, shard: str = "0/1",
             report_only: bool = False) -> Path:
    """Run (this shard of) an experiment, then write results.csv, delong.csv, report.md and the
    plot into ``out``; returns report.md."""
    from echoclr.report import write_report  # matplotlib only when reporting

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "experiment.json", json.dumps(dataclasses.asdict(spec), indent=2))
    if not report_only:
        index, n_shards = (int(x) for x in shard.split("/"))
        encoders = pretrain_all(spec, out)
        cells = [(i, t, f, s) for t in spec.tasks for f in spec.fractions
                 for s in spec.seeds for i in spec.inits]
        for k, cell in enumerate(cells):
            if k % n_shards == index:
                run_cell(spec, out, encoders, *cell)
    results = collect_results(spec, out)
    results.to_csv(out / "results.csv", index=False)
    tests = delong_rows(spec, out, results)
    tests.to_csv(out / "delong.csv", index=False)
    write_report(spec, results, tests, out)
    return out / "report.md"
