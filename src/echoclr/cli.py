"""Command line: parses arguments into each command's config dataclass and dispatches.

Flags are generated from the dataclass fields (help text from their trailing comments);
``--config FILE.toml`` sets defaults, flags override. No logic lives here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import re
import sys
import tomllib
import typing
from pathlib import Path

# command → (module, config class, function, positional fields, summary)
COMMANDS = {
    "synth": ("echoclr.synth.cohort", "SynthConfig", "synthesize", ("out",),
              "write the synthetic echo cohort (AVI + DICOM + manifest.csv)"),
    "ingest": ("echoclr.data.ingest", "IngestConfig", "ingest", ("manifest",),
               "decode, mask, resize and cache an archive listed in a manifest"),
    "pretrain": ("echoclr.pretrain", "PretrainConfig", "pretrain", ("cache",),
                 "self-supervised pretraining (echoclr | mi-simclr | simclr)"),
    "finetune": ("echoclr.finetune", "FinetuneConfig", "finetune", ("cache",),
                 "fine-tune a classifier on a fraction of labeled studies"),
    "evaluate": ("echoclr.evaluate", "EvaluateConfig", "evaluate_run", ("run",),
                 "study-level metrics with 95 % bootstrap CIs for a fine-tuned run"),
    "experiment": ("echoclr.experiment", "ExperimentConfig", "run_experiment", ("config",),
                   "the label-efficiency experiment: pretrain, fine-tune every cell, report"),
    "demo": ("echoclr.demo", "DemoConfig", "run_demo", (),
             "the whole study on the built-in synthetic cohort, on a CPU, in minutes"),
    "predict": ("echoclr.predict", "PredictConfig", "predict", ("model", "inputs"),
                "probabilities for new videos/studies (DICOM, AVI/MP4 or a manifest)"),
    "saliency": ("echoclr.saliency", "SaliencyConfig", "saliency", ("model", "video"),
                 "Grad-CAM per frame, as an overlay video and a max-over-time PNG"),
    "embed": ("echoclr.embed", "EmbedConfig", "embed", ("model", "cache"),
              "encoder features per video and study, with a 2-D projection plot"),
    "export": ("echoclr.export", "ExportConfig", "export", ("model",),
               "export a fine-tuned model to TorchScript or ONNX"),
}


def _field_help(cls) -> dict[str, str]:
    """Trailing ``# comment`` of each dataclass field, used as its --help text."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, flags=re.M))


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
    hints = typing.get_type_hints(cls)
    helps = _field_help(cls)
    for f in dataclasses.fields(cls):
        tp, nargs = _scalar_type(hints[f.name])
        text = helps.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        if f.name in positional:
            parser.add_argument(f.name, type=tp, nargs="+" if nargs else None, help=text)
        elif tp is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name,
                                action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            given = "required" if _required(f) else f"default: {f.default!r}"
            parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=tp,
                                nargs=nargs, default=None, help=f"{text} ({given})")


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
    for name, (module, cls_name, _, positional, summary) in COMMANDS.items():
        summary = summary.replace("%", "%%")  # argparse formats help with %
        p = sub.add_parser(name, help=summary, description=summary)
        if command is not None and name != command:
            continue
        cls = getattr(importlib.import_module(module), cls_name)
        add_config_arguments(p, cls, positional)
        p.add_argument("--config-file", dest="config_file", help="TOML file of defaults")
    cmp = sub.add_parser("compare", help="DeLong test + paired bootstrap ΔAUROC of two runs")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("--n-resamples", type=int, default=1000)
    cmp.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The command is the first word (the top-level parser has no options besides --help).
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    if args.command == "compare":
        from echoclr.evaluate import compare_runs

        print(json.dumps(compare_runs(args.run_a, args.run_b, n_resamples=args.n_resamples,
                                      seed=args.seed), indent=2, default=float))
        return 0
    module, cls_name, fn_name, _, _ = COMMANDS[args.command]
    mod = importlib.import_module(module)
    cfg = config_from_args(getattr(mod, cls_name), args)
    result = getattr(mod, fn_name)(cfg)
    return _report(args.command, result)


def _report(command: str, result) -> int:
    """Print a command's result; exit status 1 when an ingest skipped files."""
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
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
