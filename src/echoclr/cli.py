"""Command line: parses arguments into each command's config dataclass and dispatches.

Flags are generated from the dataclass fields, their help from the fields' metadata
(:func:`echoclr.options.opt`); ``--config-file FILE.toml`` sets defaults, flags override.
Only the chosen command's module (``echoclr.commands.NAME``) is imported. No logic lives here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import importlib.metadata
import sys
import typing
from pathlib import Path

from echoclr.errors import UserError
from echoclr.options import help_text
from echoclr.toml_file import read_toml

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
    "views": ("ViewsConfig", "views", ("cache",),
              "Echo view classifier from a few labeled videos; fills the manifest's view."),
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
    """Defaults ← --config TOML ← flags.

    Raises:
        UserError: an unreadable config file, a setting the command does not have (naming the
            file and the closest setting), or a required setting not given.
    """
    values = {}
    if getattr(args, "config_file", None):
        values.update(read_toml(args.config_file, "--config-file"))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    for name, v in list(values.items()):
        if typing.get_origin(hints.get(name)) is tuple and isinstance(v, list):
            values[name] = tuple(v)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:  # flags are generated from the fields, so only a config file has others
        close = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
        hints = "".join(f"; {k}: did you mean {c[0]}?" for k, c in close.items() if c)
        raise UserError(f"{args.config_file}: unknown setting(s) {', '.join(unknown)}{hints} "
                        f"(settings of echoclr {args.command}: {', '.join(names)})")
    missing = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls)
               if _required(f) and f.name not in values]
    if missing:
        raise UserError(f"missing required setting(s): {', '.join(missing)}")
    return cls(**values)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command``, only that command's module is imported and its flags
    built (the others stay bare entries), so `echoclr --help` and each command start fast."""
    parser = argparse.ArgumentParser(
        prog="echoclr", description="Label-efficient echocardiography with EchoCLR pretraining.")
    parser.add_argument("--version", action="version", version=f"echoclr {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="Show the traceback of a user error instead of its one line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (cls_name, _, positional, summary) in COMMANDS.items():
        summary = summary.replace("%", "%%")  # argparse formats help with %
        p = sub.add_parser(name, help=summary, description=summary)
        if command is not None and name != command:
            continue
        add_config_arguments(p, getattr(command_module(name), cls_name), positional)
        p.add_argument("--config-file", dest="config_file", help="TOML file of defaults.")
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("echoclr")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from echoclr import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0, 1 (some inputs skipped) or 2 (a user error, printed as
    one line on stderr: ``echoclr COMMAND: error: MESSAGE``)."""
    argv = sys.argv[1:] if argv is None else argv
    # The command is the first word (the top-level options are flags without values).
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    cls_name, fn_name, _, _ = COMMANDS[args.command]
    module = command_module(args.command)
    try:
        cfg = config_from_args(getattr(module, cls_name), args)
        with _removed_if_left_empty(getattr(cfg, "out", None)):
            result = getattr(module, fn_name)(cfg)
    except Exception as err:
        if args.debug or not is_user_error(err):
            raise
        print(f"echoclr {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    return _report(args.command, result)


def is_user_error(err: Exception) -> bool:
    """A mistake the user can fix: :class:`~echoclr.errors.UserError`, a bad manifest or video,
    or a missing file that echoclr itself reported (its message names the path; an OS error
    from deep inside, with an errno, is a bug and keeps its traceback)."""
    from echoclr.data.manifest import ManifestError
    from echoclr.data.video_types import VideoReadError

    if isinstance(err, FileNotFoundError):
        return err.errno is None
    return isinstance(err, (UserError, ManifestError, VideoReadError))


def one_line(err: Exception) -> str:
    """The message on one line (a manifest's problems joined by semicolons)."""
    lines = [line.strip().removeprefix("- ") for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])]).strip()


@contextlib.contextmanager
def _removed_if_left_empty(out: str | None):
    """On failure, remove the output folder a command created and left empty."""
    created = out is not None and not Path(out).exists()
    try:
        yield
    except BaseException:
        if created and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()
        raise


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
        print(f"predictions: {result}"
              + (f" ({failed} videos could not be scored)" if failed else ""))
        return 1 if failed else 0
    if command == "evaluate":
        level = "video" if result.get("classes") else "study"
        s, n = result[level]["macro_auroc" if level == "video" else "auroc"], result[level]["n"]
        flag = "" if s["ci_reliable"] else "; the interval is unreliable, see the warnings"
        what = f"macro AUROC over {', '.join(result['classes'])}" if level == "video" \
            else "study AUROC"
        print(f"{what} {s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}] "
              f"({n} {'videos' if level == 'video' else 'studies'}{flag})")
        for warning in result["warnings"]:
            print(f"warning: {warning}")
        return 0
    if command == "views":
        import json

        m = json.loads((result / "metrics.json").read_text())
        score = "n/a" if m["macro_auroc"] is None else f"{m['macro_auroc']:.3f}"
        print(f"views {m['views']}: macro AUROC {score}, accuracy "
              f"{m['accuracy'] if m['accuracy'] is None else round(m['accuracy'], 3)} on "
              f"{m['n_videos']} held-out labeled videos (fitted on {m['n_fit_videos']}); {result}")
        return 0
    if command == "compare":
        from echoclr.valid_json import json_text

        print(json_text(result))
        return 0
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
