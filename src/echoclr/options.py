"""Config fields that carry their own ``--help`` text, for the frozen config dataclasses of the
commands: ``size: int = opt(112, "Side of the square output frames, in pixels.")``.

Torch-free: the CLI reads these while it builds a command's flags.
"""

from __future__ import annotations

import dataclasses


def opt(default, text: str):
    """A dataclass field with a default and its help sentence (the CLI appends the default)."""
    return dataclasses.field(default=default, metadata={"help": text})


def required(text: str):
    """A dataclass field without a default, with its help sentence (the CLI asks for it)."""
    return dataclasses.field(metadata={"help": text})


def setting_names(config) -> set[str]:
    """The names of a config dataclass's settings (to name a table's unknown keys)."""
    return {f.name for f in dataclasses.fields(config)}


def help_text(f: dataclasses.Field) -> str:
    """The help sentence of a config field ('' when it has none)."""
    return f.metadata.get("help", "")


# Fields several commands share, with one wording.
def cache_opt():
    return opt("", "Cache folder written by `echoclr ingest`.")


def model_opt():
    return opt("", "Fine-tuning run folder (model.pt and model.json), or its model.pt.")


def precision_opt():
    return opt("auto", "auto (bf16 on GPUs and on CPUs with AMX, else fp32), bf16 or fp32.")


def device_opt():
    return opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N.")


# Spellings of "every view": TOML has no null, and `--view None` reaches a config as a string.
ALL_VIEWS = ("all", "any", "none", "")


def view_of(value: str | None) -> str | None:
    """An echo view setting, stripped; None (every view) for None or any of :data:`ALL_VIEWS`
    in any case. Views are matched case-insensitively (:meth:`echoclr.data.cache.VideoCache.rows`).
    """
    if value is None or value.strip().casefold() in ALL_VIEWS:
        return None
    return value.strip()


def view_opt(default: str, text: str = "Use the videos of this echo view only (PLAX, A4C …, "
                                       "in any case); all: every view."):
    """The ``view`` field; its config normalises it with :func:`view_of` in ``__post_init__``."""
    return opt(default, text)


class ViewSetting:
    """Base of the configs with a ``view`` field: normalised by :func:`view_of` when made, so
    the CLI, TOML files and Python callers all spell every view the same way."""

    def __post_init__(self):
        object.__setattr__(self, "view", view_of(self.view))


@dataclasses.dataclass(frozen=True)
class LabeledReadoutSetting(ViewSetting):
    """The fields every readout of a label shares (``finetune``, ``probe``): the cache, the
    task, the encoder it starts from and the drawn label fraction."""

    cache: str = cache_opt()
    task: str = opt("lvh", "Label column of the manifest to learn: binary (0/1, one label a "
                           "study), or categorical such as view (multi-class, one label a video; "
                           "--task view classifies every view).")
    init: str = opt("random", "Encoder initialisation: random, kinetics, or the path of a "
                              "pretraining encoder.pt.")
    encoder: str = opt("r3d_18", "Architecture of a random or kinetics init: r3d_18, "
                                 "r2plus1d_18, mc3_18 or r3d_tiny.")
    width: int = opt(16, "Base width of r3d_tiny (features: 8 x width).")
    weights: str | None = opt(None, "Kinetics-400 state-dict file; None reads the one in "
                                    "torch's cache.")
    fraction: float = opt(1.0, "Share of the labeled training studies used (nested subsets).")
    fraction_seed: int = opt(0, "Seed of the subset draw; the same for every init, so all see "
                                "the same studies.")
