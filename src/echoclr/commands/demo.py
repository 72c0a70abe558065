"""``echoclr demo``: the label-efficiency study on the built-in synthetic cohort, on a CPU.

Synthesize a cohort → ingest it → pretrain EchoCLR → fine-tune EchoCLR and random init at a few
label fractions for ``lvh`` and ``severe_as`` → report.md + label_efficiency.png. The settings
live in ``configs/demo.toml`` (and ``configs/demo_ci.toml`` for the small CI version), whose
``[experiment]`` tables become the :class:`ExperimentSpec` the experiment runs; the paper's
protocol is ``configs/paper.toml``.
"""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from echoclr.atomic import atomic_write_text
from echoclr.commands.experiment import ExperimentSpec, run_spec
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.synth import synthesize
from echoclr.errors import UserError
from echoclr.options import opt, precision_opt, setting_names
from echoclr.runs import machine_description
from echoclr.synth.cohort import SynthConfig
from echoclr.toml_file import read_toml


@dataclass(frozen=True)
class DemoConfig:
    out: str = opt("echoclr_demo", "Output folder: cohort, cache, runs and report.")
    preset: str = opt("demo", "demo (about 10 min on 2 AVX2 CPU cores), full "
                              "(more readouts, draws and pretraining; hours), demo_ci (about "
                              "1 min, for CI), or a .toml file shaped like configs/demo.toml.")
    patients: int | None = opt(None, "Cohort size, overriding the preset's.")
    seed: int | None = opt(None, "Seed of cohort, splits and training, overriding the preset's.")
    workers: int = opt(2, "Processes for synth and ingest.")
    precision: str = precision_opt()


def load_preset(name: str) -> dict:
    """A demo preset: a packaged one (``echoclr/configs/NAME.toml``), or a TOML file of the same
    form (its path ends in ``.toml``), to try a design without editing the package.

    Raises:
        UserError: an unknown preset name, a missing or malformed file, a missing key or an
            unknown one (top level, ``[synth]``, ``[ingest]``; ``[experiment]`` is checked by
            :meth:`ExperimentSpec.from_dict`).
    """
    if name.endswith(".toml"):
        preset = read_toml(name, "--preset")
    else:
        try:
            text = resources.files("echoclr").joinpath("configs", f"{name}.toml").read_text()
        except FileNotFoundError:
            raise UserError(f"--preset {name}: no such preset; choose demo, full or demo_ci, or "
                            "give the path of a .toml file shaped like configs/demo.toml") from None
        preset = tomllib.loads(text)
    missing = {"patients", "seed", "experiment"} - set(preset)
    unknown = set(preset) - {"patients", "seed", "experiment", "synth", "ingest"}
    problems = ([f"missing {sorted(missing)}"] if missing else []) + (
        [f"unknown keys {sorted(unknown)}"] if unknown else [])
    for table, config in (("synth", SynthConfig), ("ingest", IngestConfig)):
        unknown = set(preset.get(table, {})) - setting_names(config)
        if unknown:
            problems.append(f"unknown keys {sorted(unknown)} in [{table}]")
    if problems:
        raise UserError(f"--preset {name}: {'; '.join(problems)} (shape it like "
                        "configs/demo.toml)")
    return preset


def run_demo(cfg: DemoConfig) -> Path:
    """Run the whole demo; returns the path of report.md (and prints the report)."""
    preset = load_preset(cfg.preset)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed = preset["seed"] if cfg.seed is None else cfg.seed
    tic = time.perf_counter()
    timings = {}
    manifest = out / "cohort" / "manifest.csv"
    if not manifest.is_file():
        synthesize(SynthConfig(out=str(out / "cohort"), seed=seed, workers=cfg.workers,
                               patients=cfg.patients or preset["patients"],
                               **preset.get("synth", {})))
    timings["synth_s"] = time.perf_counter() - tic
    cache = out / "cache"
    if not (cache / "manifest.csv").is_file():
        result = ingest(IngestConfig(manifest=str(manifest), out=str(cache), seed=seed,
                                     workers=cfg.workers, **preset.get("ingest", {})))
        if result.n_skipped:
            print(result.summary())
    timings["ingest_s"] = time.perf_counter() - tic - timings["synth_s"]
    experiment = preset["experiment"] | {"cache": str(cache.resolve()), "seed": seed}
    for section in ("pretrain", "probe", "finetune", "evaluate"):
        experiment[section] = experiment.get(section, {}) | {"precision": cfg.precision}
    spec = ExperimentSpec.from_dict(experiment, source=f"demo preset {cfg.preset!r}")
    report = run_spec(spec, out / "experiment")
    timings["total_s"] = time.perf_counter() - tic
    atomic_write_text(out / "timings.json", json.dumps(
        {k: round(v, 1) for k, v in timings.items()} | {"machine": machine_description(),
                                                       "precision": cfg.precision}, indent=2))
    print(report.read_text())
    print(f"\nwall time {timings['total_s'] / 60:.1f} min; report: {report}; "
          f"plot: {report.parent / 'label_efficiency.png'}")
    return report
