"""Command line: parses arguments into each command's config dataclass and dispatches.

Flags are generated from the dataclass fields, their help from the fields' metadata
(:func:`echoclr.options.opt`); ``--config-file FILE.toml`` sets defaults, flags override.
Only the chosen command's module (``echoclr.commands.NAME``) is imported. No logic lives here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import tomllib
import typing
from pathlib import Path

from echoclr.options import help_text

# command → (config class, function, positional fields, summary); module echoclr.commands.NAME
COMMANDS = {
    "synth": ("SynthConfig", "synthesize", ("out",),
              "Write the synthetic echo cohort (AVI + DICOM + manifest.csv)."),
    "scan": ("ScanConfig", "scan", ("root",),
             "Write a manifest from a PACS export by reading DICOM headers only."),
    "ingest": ("IngestConfig", "ingest", ("manifest",),
               "Decode, mask, resize and cache an archive listed in a manifest."),
    "pretrain": ("PretrainConfig", "pretrain", ("cache",),
                 "Self-supervised pretraining (echoclr, mi-simclr or simclr)."),
    "finetune": ("FinetuneConfig", "finetune", ("cache",),
                 "Fine-tune a classifier on a fraction of the labeled studies."),
    "probe": ("ProbeConfig", "probe", ("cache",),
              "Probe readout: a logistic regression on a frozen encoder's features."),
    "evaluate": ("EvaluateConfig", "evaluate_run", ("run",),
                 "Study-level metrics with 95 % bootstrap CIs for a fine-tuned run."),
    "compare": ("CompareConfig", "compare", ("run_a", "run_b"),
                "DeLong test and paired bootstrap of the AUROC difference of two runs."),
    "experiment": ("ExperimentConfig", "run_experiment", ("config",),
                   "The label-efficiency experiment: pretrain, train every cell, pool, report."),
    "demo": ("DemoConfig", "run_demo", (),
             "The whole study on the built-in synthetic cohort, on a CPU, in minutes."),
    "predict": ("PredictConfig", "predict", ("model", "inputs"),
                "Probabilities for new videos and studies (DICOM, AVI/MP4 or a manifest)."),
    "saliency": ("SaliencyConfig", "saliency", ("model", "video"),
                 "Grad-CAM per frame, as an overlay video and a max-over-time PNG."),
    "embed": ("EmbedConfig", "embed", ("model", "cache"),
              "Encoder features per video and study, with a 2-D projection plot."),
    "export": ("ExportConfig", "export", ("model",),
               "Export a fine-tuned model to TorchScript or ONNX."),
    "info": ("InfoConfig", "info", ("target",),
             "Counts per split, view and label of a cache or manifest, with its warnings."),
}


def command_module(name: str):
    """The module of command ``name``."""
    return importlib.import_module(f"echoclr.commands.{name}")


def _scalar_type(tp):
    """(parser type, nargs) for a field's annotation."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        return args[0], "*"
    if type(None) in args:  # X | None
        return next(a for a in args if a is not type(None)), None
    if typing.get_origin(tp) is list:
        return args[0], "*"
    return tp, None


def _required(f: dataclasses.Field) -> bool:
    """A config field with neither a default nor a default factory."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def add_config_arguments(parser: argparse.ArgumentParser, cls, positional=()) -> None:
    """One argument per field of the config dataclass ``cls``; help from the field's metadata,
    followed by its default (or "required")."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, nargs = _scalar_type(hints[f.name])
        text = help_text(f).replace("%", "%%")  # argparse formats help with %
        flag = f"--{f.name.replace('_', '-')}"
        if f.name in positional:
            parser.add_argument(f.name, type=tp, nargs="+" if nargs else None, help=text)
            continue
        given = "(required)" if _required(f) else f"(default: {f.default!r})"
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{text} {given}")
        else:
            parser.add_argument(flag, dest=f.name, type=tp, nargs=nargs, default=None,
                                help=f"{text} {given}")


def config_from_args(cls, args: argparse.Namespace):
    """Defaults ← --config TOML ← flags."""
    values = {}
    if getattr(args, "config_file", None):
        values.update(tomllib.loads(Path(args.config_file).read_text()))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    for name, v in list(values.items()):
        if typing.get_origin(hints.get(name)) is tuple and isinstance(v, list):
            values[name] = tuple(v)
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise SystemExit(f"unknown settings: {sorted(unknown)}")
    missing = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls)
               if _required(f) and f.name not in values]
    if missing:
        raise SystemExit(f"missing required setting(s): {', '.join(missing)}")
    return cls(**values)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command``, only that command's module is imported and its flags
    built (the others stay bare entries), so `echoclr --help` and each command start fast."""
    parser = argparse.ArgumentParser(
        prog="echoclr", description="Label-efficient echocardiography with EchoCLR pretraining.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (cls_name, _, positional, summary) in COMMANDS.items():
        summary = summary.replace("%", "%%")  # argparse formats help with %
        p = sub.add_parser(name, help=summary, description=summary)
        if command is not None and name != command:
            continue
        add_config_arguments(p, getattr(command_module(name), cls_name), positional)
        p.add_argument("--config-file", dest="config_file", help="TOML file of defaults.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command is the first word (the top-level parser has no options besides --help).
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    cls_name, fn_name, _, _ = COMMANDS[args.command]
    module = command_module(args.command)
    cfg = config_from_args(getattr(module, cls_name), args)
    return _report(args.command, getattr(module, fn_name)(cfg))


def _report(command: str, result) -> int:
    """Print a command's result; exit status 1 when an ingest skipped files or a prediction
    failed."""
    if command == "ingest":
        print(result.summary())
        return 1 if result.n_skipped else 0
    if command == "predict":
        import pandas as pd

        rows = pd.read_csv(result)
        failed = int(((rows["level"] == "video") & (rows["status"] != "ok")).sum())
        print(f"predictions: {result}" + (f" ({failed} videos could not be scored)" if failed else ""))
        return 1 if failed else 0
    if command == "evaluate":
        s = result["study"]["auroc"]
        print(f"study AUROC {s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
        return 0
    if command == "compare":
        print(json.dumps(result, indent=2, default=float))
        return 0
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
