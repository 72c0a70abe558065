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
