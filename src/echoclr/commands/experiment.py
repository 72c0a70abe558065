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
from dataclasses import dataclass, field
from pathlib import Path

from echoclr.atomic import atomic_write_text
from echoclr.commands.evaluate import EvaluateConfig, evaluate_run, val_studies_key, \
    write_evaluation
from echoclr.commands.finetune import FinetuneConfig, finetune
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.commands.probe import ProbeConfig, probe, probe_predictions
from echoclr.data.cache import VideoCache
from echoclr.data.categorical import is_categorical
from echoclr.errors import UserError
from echoclr.metrics import aggregate_by_study
from echoclr.options import opt, setting_names
from echoclr.pretraining import METHODS
from echoclr.runs import VAL_STUDIES, write_derived
from echoclr.toml_file import read_toml
from echoclr.verdict import collect_results, pooled_table

INITS = ("random", "kinetics", *METHODS)
READOUTS = ("probe", "finetune", "lpft")  # lpft: fine-tuning from the probe's head


@dataclass(frozen=True)
class ExperimentConfig:
    config: str = opt("", "Experiment TOML file (see src/echoclr/configs/*.toml).")
    out: str = opt("runs/experiment", "Output folder.")
    cache: str | None = opt(None, "Cache folder, overriding the TOML's.")
    shard: str = opt("0/1", "i/n runs every n-th group of cells starting at group i, to spread "
                            "the cells over processes or GPUs.")
    report_only: bool = opt(False, "Only collect the finished cells into the results, report "
                                   "and plot.")


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment runs: from a TOML file (`from_toml`) or a demo preset (`from_dict`)."""

    cache: str
    tasks: tuple[str, ...] = ("lvh", "severe_as")
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    draws: int = 5  # label draws per fraction (fraction 1.0 has a single subset: one draw)
    finetune_draws: int | None = None  # draws of the fine-tuning readouts (None: `draws`)
    inits: tuple[str, ...] = ("random", "echoclr")
    readouts: tuple[str, ...] = ("finetune",)  # probe | finetune | lpft
    readouts_by_init: dict = field(default_factory=dict)  # {init: readouts}, replacing readouts
    only_at: dict = field(default_factory=dict)  # {readout or init/readout: fractions}: only there
    splits: tuple[str, ...] = ("test",)
    reference: str = "random"  # pooled comparisons: every init against this one
    seed: int = 0  # a random init's probe weights; pretraining's seed unless it sets its own
    pretrain: dict = field(default_factory=dict)  # PretrainConfig overrides
    probe: dict = field(default_factory=dict)  # ProbeConfig overrides
    finetune: dict = field(default_factory=dict)  # FinetuneConfig overrides
    finetune_by_init: dict = field(default_factory=dict)  # {init: overrides} on top of finetune
    # {fraction: overrides} on top of finetune, under finetune_by_init; e.g. more epochs with all
    # labels, where a curve plateaus later, or another lr at the low fractions
    finetune_by_fraction: dict = field(default_factory=dict)
    lpft: dict = field(default_factory=lambda: {"encoder_lr_scale": 0.1})  # on top of finetune
    evaluate: dict = field(default_factory=dict)  # EvaluateConfig overrides

    @classmethod
    def from_toml(cls, path: str | Path, cache: str | None = None) -> ExperimentSpec:
        """The spec a TOML file describes (``cache``, when given, overrides its cache)."""
        data = read_toml(path, "CONFIG")
        return cls.from_dict(data | ({"cache": cache} if cache else {}), source=path)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | Path = "experiment") -> ExperimentSpec:
        """The spec of a parsed TOML table (lists become tuples), checked.

        Raises:
            UserError: naming ``source``, for no cache, unknown keys, inits or readouts.
        """
        if not data.get("cache"):
            raise UserError(f"{source}: no `cache` given (set it in the file or pass --cache)")
        unknown = set(data) - setting_names(cls)
        if unknown:
            raise UserError(f"{source}: unknown keys {sorted(unknown)}")
        sections = {"pretrain": PretrainConfig, "probe": ProbeConfig, "finetune": FinetuneConfig,
                    "lpft": FinetuneConfig, "evaluate": EvaluateConfig}
        tables = [(name, config, data.get(name, {})) for name, config in sections.items()] + [
            (f"{key}.{name}", FinetuneConfig, table)
            for key in ("finetune_by_init", "finetune_by_fraction")
            for name, table in data.get(key, {}).items()]
        for name, config, table in tables:
            unknown = set(table) - setting_names(config)
            if unknown:
                command = config.__module__.rsplit(".", 1)[-1]
                raise UserError(f"{source}: [{name}] has unknown keys {sorted(unknown)}; see "
                                f"`echoclr {command} --help` for its settings")
        fractions = data.get("fractions", cls.fractions)
        for key in data.get("finetune_by_fraction", {}):
            if not any(abs(_as_fraction(key, source) - f) < 1e-9 for f in fractions):
                raise UserError(f"{source}: [finetune_by_fraction] key {key!r} is not one of "
                                f"the fractions {list(fractions)}")
        by_init = data.get("readouts_by_init", {})
        for key, values, known in (("inits", data.get("inits", ()), INITS),
                                   ("readouts", data.get("readouts", ()), READOUTS),
                                   ("readouts_by_init", by_init, INITS),
                                   ("readouts_by_init", sum(map(list, by_init.values()), []),
                                    READOUTS),
                                   ("only_at", [k.split("/")[-1] for k in data.get("only_at", {})],
                                    READOUTS),
                                   ("only_at", [k.split("/")[0] for k in data.get("only_at", {})
                                                if "/" in k], INITS)):
            bad = set(values) - set(known)
            if bad:
                raise UserError(f"{source}: unknown {key} {sorted(bad)}; choose from {known}")
        if data.get("finetune_draws") and data["finetune_draws"] > data.get("draws", 5):
            raise UserError(f"{source}: finetune_draws ({data['finetune_draws']}) exceeds draws "
                             f"({data.get('draws', 5)}): LP-FT starts from the probe of its draw")
        if data.get("draws", 1) < 1:
            raise UserError(f"{source}: draws must be at least 1, got {data['draws']}")
        data = {k: tuple(v) if k in ("tasks", "fractions", "inits", "readouts", "splits") else v
                for k, v in data.items()}
        return cls(**data)

    def finetune_overrides(self, init: str, fraction: float) -> dict:
        """FinetuneConfig overrides of one cell: [finetune] (its Kinetics weights for the
        kinetics init only) ← [finetune_by_fraction] ← [finetune_by_init]."""
        by_fraction = {}
        for key, table in self.finetune_by_fraction.items():
            if abs(float(key) - fraction) < 1e-9:
                by_fraction = table
        return (_for_init(self.finetune, init) | by_fraction
                | self.finetune_by_init.get(init, {}))

    def readouts_of(self, init: str) -> tuple[str, ...]:
        """The readouts run for ``init`` (LP-FT never for random: its weights are redrawn)."""
        chosen = tuple(self.readouts_by_init.get(init, self.readouts))
        return tuple(r for r in chosen if not (r == "lpft" and init == "random"))

    def draws_of(self, fraction: float, readout: str, init: str | None = None) -> int:
        """Label draws of one fraction and readout (of ``init``; the whole training set is one
        subset); 0 where ``only_at`` keeps the readout to other fractions."""
        for key in (f"{init}/{readout}", readout):
            if key in self.only_at:
                if not any(abs(fraction - f) < 1e-9 for f in self.only_at[key]):
                    return 0
                break
        if fraction >= 1:
            return 1
        if readout == "probe" or self.finetune_draws is None:
            return self.draws
        return self.finetune_draws


def cell_name(task: str, init: str, readout: str, fraction: float, draw: int) -> str:
    return f"{task}/{init}/{readout}/frac{fraction:g}_draw{draw}"


def pretrain_all(spec: ExperimentSpec, out: Path) -> dict[str, Path]:
    """Pretrain each requested SSL method once (resuming a killed run); returns encoder paths."""
    encoders = {}
    for method in [i for i in spec.inits if i in METHODS]:
        run = out / "pretrain" / method
        encoder = run / "encoder.pt"
        if not encoder.is_file():
            cfg = PretrainConfig(**({"seed": spec.seed} | spec.pretrain
                                    | {"cache": spec.cache, "out": str(run), "method": method,
                                       "resume": True}))
            encoder = pretrain(cfg)
        encoders[method] = encoder
    return encoders


def _as_fraction(key: str, source) -> float:
    """A [finetune_by_fraction] key ("1.0", "0.2") as a fraction."""
    try:
        return float(key)
    except ValueError:
        raise UserError(f"{source}: [finetune_by_fraction] key {key!r} is not a number; write "
                        'the fraction as a quoted key, e.g. "1.0"') from None


def _for_init(table: dict, init: str) -> dict:
    """A spec's shared [probe] / [finetune] settings as one init's cell takes them: the Kinetics
    weights file (``weights``) goes to the kinetics init only."""
    return {k: v for k, v in table.items() if k != "weights" or init == "kinetics"}


def _evaluate_cfg(spec: ExperimentSpec, run: Path, split: str) -> EvaluateConfig:
    return EvaluateConfig(**({"plots": False} | spec.evaluate
                             | {"run": str(run), "split": split, "out": str(run / split)}))


def _train_probe(spec, out, run, init_arg, task, fraction, draw) -> None:
    """Fit a probe cell and evaluate it from the stored features (no forward pass per cell)."""
    evaluate = {split: _evaluate_cfg(spec, run, split) for split in ("val", *spec.splits)}
    clips = evaluate["val"].clips
    store = out / "features"
    shared = _for_init(spec.probe, init_arg)
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
    init_arg = str(encoders[init]) if init in encoders else init
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
