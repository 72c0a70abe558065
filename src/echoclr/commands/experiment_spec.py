"""What an experiment runs: :class:`ExperimentSpec`, from a TOML file or a demo preset, checked
before anything runs (unknown keys, inits, readouts, fractions; each settings table against
the config of the command it feeds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from echoclr.commands.evaluate import EvaluateConfig
from echoclr.commands.finetune import FinetuneConfig
from echoclr.commands.pretrain import PretrainConfig
from echoclr.commands.probe import ProbeConfig
from echoclr.errors import UserError
from echoclr.options import setting_names
from echoclr.pretraining import METHODS
from echoclr.toml_file import read_toml

INITS = ("random", "kinetics", *METHODS)
READOUTS = ("probe", "finetune", "lpft")  # lpft: fine-tuning from the probe's head


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
    # One pretraining run per label draw (seed + draw) instead of one shared by every draw: then
    # the between-draw variance of p pooled holds pretraining's run-to-run noise too (one
    # pretraining run's noise moved the demo's severe-AS p from 0.176 to 0.018; findings).
    # Costs a pretraining run per draw of the init's most-drawn readout.
    pretrain_per_draw: bool = False
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
            if not any(same_fraction(_as_fraction(key, source), f) for f in fractions):
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
        if not isinstance(data.get("pretrain_per_draw", False), bool):
            raise UserError(f"{source}: pretrain_per_draw must be true or false, got "
                            f"{data['pretrain_per_draw']!r}")
        if data.get("draws", 1) < 1:
            raise UserError(f"{source}: draws must be at least 1, got {data['draws']}")
        data = {k: tuple(v) if k in ("tasks", "fractions", "inits", "readouts", "splits") else v
                for k, v in data.items()}
        return cls(**data)

    def finetune_overrides(self, init: str, fraction: float) -> dict:
        """FinetuneConfig overrides of one cell: [finetune] (its Kinetics weights for the
        kinetics init only) ← [finetune_by_fraction] ← [finetune_by_init]."""
        by_fraction = next((table for key, table in self.finetune_by_fraction.items()
                            if same_fraction(float(key), fraction)), {})
        return (settings_for_init(self.finetune, init) | by_fraction
                | self.finetune_by_init.get(init, {}))

    def readouts_of(self, init: str) -> tuple[str, ...]:
        """The readouts run for ``init`` (LP-FT never for random: its weights are redrawn)."""
        chosen = tuple(self.readouts_by_init.get(init, self.readouts))
        return tuple(r for r in chosen if not (r == "lpft" and init == "random"))

    def pretraining_runs(self, init: str) -> int:
        """Pretraining runs of a pretrained ``init``: 1, or with ``pretrain_per_draw`` one per
        draw of its most-drawn readout."""
        if not self.pretrain_per_draw:
            return 1
        return max([self.draws_of(f, r, init) for f in self.fractions
                    for r in self.readouts_of(init)] + [1])

    def draws_of(self, fraction: float, readout: str, init: str | None = None) -> int:
        """Label draws of one fraction and readout (of ``init``; the whole training set is one
        subset); 0 where ``only_at`` keeps the readout to other fractions."""
        for key in (f"{init}/{readout}", readout):
            if key in self.only_at:
                if not any(same_fraction(fraction, f) for f in self.only_at[key]):
                    return 0
                break
        if fraction >= 1:
            return 1
        if readout == "probe" or self.finetune_draws is None:
            return self.draws
        return self.finetune_draws


def same_fraction(a: float, b: float) -> bool:
    """Two label fractions are one (a TOML key "0.1" and the list's 0.1 need not be bit-equal)."""
    return abs(a - b) < 1e-9


def _as_fraction(key: str, source) -> float:
    """A [finetune_by_fraction] key ("1.0", "0.2") as a fraction."""
    try:
        return float(key)
    except ValueError:
        raise UserError(f"{source}: [finetune_by_fraction] key {key!r} is not a number; write "
                        'the fraction as a quoted key, e.g. "1.0"') from None


def settings_for_init(table: dict, init: str) -> dict:
    """A spec's shared [probe] / [finetune] settings as one init's cell takes them: the Kinetics
    weights file (``weights``) goes to the kinetics init only."""
    return {k: v for k, v in table.items() if k != "weights" or init == "kinetics"}
