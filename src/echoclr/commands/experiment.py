"""``echoclr experiment``: the label-efficiency experiment — AUROC against label fraction.

A TOML file (or a demo preset) names the cache, tasks, fractions, inits and readouts, how many
label draws each fraction gets, and overrides of the pretraining/probe/fine-tuning configs. Each
SSL method is pretrained once; every cell (task × fraction × draw × init × readout) is trained
and evaluated; finished cells are skipped on a re-run. At one draw every init sees the same
labeled studies. Outputs: results.csv (one row per cell and split), pooled.csv (one verdict per
task, split, fraction, init and readout: :mod:`echoclr.verdict`), report.md and
label_efficiency.png.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from echoclr.atomic import atomic_write_text
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run, val_studies_key, \
    write_evaluation
from echoclr.commands.experiment_spec import READOUTS, ExperimentSpec, settings_for_init
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.commands.probe import ProbeConfig, probe, probe_predictions
from echoclr.data.cache import VideoCache
from echoclr.data.categorical import is_categorical
from echoclr.errors import UserError
from echoclr.metrics import aggregate_by_study
from echoclr.options import opt
from echoclr.pretraining import METHODS
from echoclr.runs import VAL_STUDIES, write_derived
from echoclr.verdict import collect_results, pooled_table


@dataclass(frozen=True)
class ExperimentConfig:
    config: str = opt("", "Experiment TOML file (see src/echoclr/configs/*.toml).")
    out: str = opt("runs/experiment", "Output folder.")
    cache: str | None = opt(None, "Cache folder, overriding the TOML's.")
    shard: str = opt("0/1", "i/n runs every n-th group of cells starting at group i, to spread "
                            "the cells over processes or GPUs.")
    report_only: bool = opt(False, "Only collect the finished cells into the results, report "
                                   "and plot.")


def cell_name(task: str, init: str, readout: str, fraction: float, draw: int) -> str:
    return f"{task}/{init}/{readout}/frac{fraction:g}_draw{draw}"


def pretrain_all(spec: ExperimentSpec, out: Path) -> dict[str, list[Path]]:
    """Pretrain each requested SSL method once, or once per label draw with
    ``pretrain_per_draw`` (resuming a killed run); returns each method's encoder paths, draw d
    using ``paths[d % len(paths)]``.

    Run k of a method trains with seed (the [pretrain] seed, else the spec's) + k into
    ``pretrain/METHOD`` (k = 0, the shared run's folder) or ``pretrain/METHOD_drawK``."""
    encoders = {}
    settings = {"seed": spec.seed} | spec.pretrain
    for method in [i for i in spec.inits if i in METHODS]:
        encoders[method] = []
        for k in range(spec.pretraining_runs(method)):
            run = out / "pretrain" / (method if k == 0 else f"{method}_draw{k}")
            encoder = run / "encoder.pt"
            if not encoder.is_file():
                cfg = PretrainConfig(**(settings | {
                    "cache": spec.cache, "out": str(run), "method": method, "resume": True,
                    "seed": settings["seed"] + k}))
                encoder = pretrain(cfg)
            encoders[method].append(encoder)
    return encoders


def _evaluate_cfg(spec: ExperimentSpec, run: Path, split: str) -> EvaluateConfig:
    return EvaluateConfig(**({"plots": False} | spec.evaluate
                             | {"run": str(run), "split": split, "out": str(run / split)}))


def _train_probe(spec, out, run, init_arg, task, fraction, draw) -> None:
    """Fit a probe cell and evaluate it from the stored features (no forward pass per cell)."""
    evaluate = {split: _evaluate_cfg(spec, run, split) for split in ("val", *spec.splits)}
    clips = evaluate["val"].clips
    store = out / "features"
    shared = settings_for_init(spec.probe, init_arg)
    probe(ProbeConfig(**(shared | {"cache": spec.cache, "out": str(run), "task": task,
                                   "init": init_arg, "fraction": fraction,
                                   "fraction_seed": draw, "seed": spec.seed,
                                   "clips": clips, "features": str(store)})))
    meta = json.loads((run / "model.json").read_text())
    cache = VideoCache(spec.cache)
    pred = {}
    for split, cfg in evaluate.items():
        rows = cache.rows(split, meta["view"])
        pred[split] = probe_predictions(run, cache, rows[rows[task].notna()], label=task,
                                        clips=clips, store=store, precision=cfg.precision)
    val_study = aggregate_by_study(pred["val"])
    write_derived(run / VAL_STUDIES, val_study.to_csv(index=False),
                  val_studies_key(run, clips, cache))
    for split in spec.splits:
        write_evaluation(evaluate[split], meta, val_study, pred[split])


def run_cell(spec: ExperimentSpec, out: Path, encoders: dict, task: str, fraction: float,
             draw: int, init: str, readout: str) -> Path:
    """Train and evaluate one cell unless its ``done.json`` exists."""
    run = out / cell_name(task, init, readout, fraction, draw)
    if (run / "done.json").is_file():
        return run
    init_arg = str(encoders[init][draw % len(encoders[init])]) if init in encoders else init
    tic = time.perf_counter()
    if readout == "probe":
        _train_probe(spec, out, run, init_arg, task, fraction, draw)
    else:
        overrides = spec.finetune_overrides(init, fraction)
        if readout == "lpft":
            head = out / cell_name(task, init, "probe", fraction, draw)
            overrides = overrides | spec.lpft | {"head_init": str(head)}
        finetune(FinetuneConfig(**(overrides | {
            "cache": spec.cache, "out": str(run), "task": task, "init": init_arg,
            "fraction": fraction, "fraction_seed": draw, "seed": draw})))
        for split in spec.splits:
            evaluate_run(_evaluate_cfg(spec, run, split))
    n_studies = json.loads((run / "config.json").read_text())["n_train_studies"]
    atomic_write_text(run / "done.json", json.dumps(
        {"task": task, "init": init, "readout": readout, "fraction": fraction, "draw": draw,
         "n_train_studies": n_studies, "seconds": round(time.perf_counter() - tic, 1)}))
    return run


def cell_groups(spec: ExperimentSpec) -> list[list[tuple]]:
    """Cells grouped by (task, fraction, draw, init), readouts in dependency order (a probe
    before the LP-FT that starts from it); a group never splits across shards."""
    groups = []
    for task in spec.tasks:
        for fraction in spec.fractions:
            for draw in range(max(spec.draws_of(fraction, r) for r in READOUTS)):
                for init in spec.inits:
                    wanted = spec.readouts_of(init)
                    order = [r for r in READOUTS
                             if r in wanted or (r == "probe" and "lpft" in wanted)]
                    cells = [(task, fraction, draw, init, r) for r in order
                             if draw < spec.draws_of(fraction, r, init)]
                    if cells:
                        groups.append(cells)
    return groups


def all_readouts(spec: ExperimentSpec) -> list[str]:
    """Every readout some init reports, in probe, finetune, lpft order."""
    used = {r for init in spec.inits for r in spec.readouts_of(init)}
    return [r for r in READOUTS if r in used]


def check_binary_tasks(spec: ExperimentSpec) -> None:
    """The label-efficiency experiment compares study AUROCs of binary tasks.

    Raises:
        UserError: naming a categorical task (such as view) among ``spec.tasks``.
    """
    manifest = VideoCache(spec.cache).manifest
    for task in spec.tasks:
        if is_categorical(manifest, task):
            raise UserError(f"tasks: {task!r} is a categorical (multi-class) column; the "
                            "experiment pools binary study AUROCs: run echoclr finetune/probe "
                            f"--task {task} and evaluate, or echoclr views")


def run_experiment(cfg: ExperimentConfig) -> Path:
    """Run (this shard of) the experiment a TOML file describes; returns report.md."""
    spec = ExperimentSpec.from_toml(cfg.config, cfg.cache)
    return run_spec(spec, Path(cfg.out), shard=cfg.shard, report_only=cfg.report_only)


def run_spec(spec: ExperimentSpec, out: Path, *, shard: str = "0/1",
             report_only: bool = False) -> Path:
    """Run (this shard of) an experiment, then write results.csv, pooled.csv, report.md and the
    plot into ``out``; returns report.md."""
    from echoclr.report import write_report  # matplotlib only when reporting

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "experiment.json", json.dumps(dataclasses.asdict(spec), indent=2))
    if not report_only:
        check_binary_tasks(spec)
        index, n_shards = (int(x) for x in shard.split("/"))
        encoders = pretrain_all(spec, out)
        for k, group in enumerate(cell_groups(spec)):
            if k % n_shards == index:
                for cell in group:
                    run_cell(spec, out, encoders, *cell)
    results = collect_results(out, spec.splits)
    results.to_csv(out / "results.csv", index=False)
    pooled = pooled_table(results, out, reference=spec.reference, readouts=all_readouts(spec))
    pooled.to_csv(out / "pooled.csv", index=False)
    write_report(spec, results, pooled, out)
    return out / "report.md"
