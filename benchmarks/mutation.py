"""Mutation testing of the modules that carry the science, each against its own tests only.

mutmut (>= 3) copies the project into a scratch folder, mutates one module there (operators,
constants, comparisons, arguments, ...) and runs that module's test files against each mutant;
a mutant the tests let pass has survived: a change in behaviour no test notices. Prints, per
module, killed / total and every survivor as file:line with the mutation. Some survivors are
equivalent mutants (the change alters nothing, e.g. a keyword dropped where it is the default):
read them before writing tests. Minutes per module on two CPU cores: not for CI.

    python benchmarks/mutation.py --modules losses metrics
    python benchmarks/mutation.py                  # every module below
    python benchmarks/mutation.py --list

Needs the ``mutation`` extra (``pip install -e .[test,mutation]``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = ("killed", "timeout", "caught by type check")  # a test (or the clock) noticed


@dataclass(frozen=True)
class Target:
    path: str  # module file, relative to the repository root
    tests: tuple[str, ...]  # the test files run against its mutants
    functions: tuple[str, ...] = ()  # mutate only these functions/classes (empty: all)


TARGETS = {
    "losses": Target("src/echoclr/losses.py",
                     ("tests/test_losses.py", "tests/test_reorder.py", "tests/test_properties.py",
                      "tests/test_distributed_equivalence.py",
                      "tests/test_finetune.py::test_smoothed_bce_applies_smoothing_and_class_"
                      "weight",
                      "tests/test_multiclass.py::test_the_multiclass_loss_is_weighted_smoothed_"
                      "cross_entropy")),
    "metrics": Target("src/echoclr/metrics.py",
                      ("tests/test_metrics.py", "tests/test_properties.py",
                       "tests/test_threshold.py")),
    "significance": Target("src/echoclr/significance.py",
                           ("tests/test_metrics.py", "tests/test_compare.py")),
    "manifest": Target("src/echoclr/data/manifest.py",
                       ("tests/test_manifest.py", "tests/test_properties.py"),
                       ("label_fraction_studies", "_study_table")),
    "splits": Target("src/echoclr/data/splits.py",
                     ("tests/test_manifest.py",
                      "tests/test_ingest.py::test_a_drawn_split_without_a_class_stops_ingest_"
                      "unless_accepted",
                      "tests/test_info.py::test_info_on_a_manifest_names_one_class_splits_and_"
                      "missing_views")),
    "finetuning": Target("src/echoclr/finetuning.py",
                         ("tests/test_finetune.py", "tests/test_finetune_behaviour.py",
                          "tests/test_finetune_steps.py")),
    "pooled": Target("src/echoclr/pooled.py", ("tests/test_pooled.py",)),
    "view_model": Target("src/echoclr/view_model.py",
                         ("tests/test_views.py::test_folded_fit_gives_sklearns_probabilities",
                          "tests/test_views.py::test_view_metrics_match_sklearn_and_count_the_"
                          "confusion",
                          "tests/test_views.py::test_separable_views_are_learned_from_five_"
                          "videos_each",
                          "tests/test_views.py::test_one_view_or_one_video_per_view_is_refused",
                          "tests/test_views.py::test_c_is_the_best_cross_validated_macro_auroc_"
                          "and_the_refit_is_sklearns",
                          "tests/test_views.py::test_views_on_single_studies_fall_back_to_the_"
                          "default_c",
                          "tests/test_views.py::test_view_metrics_leave_out_views_that_were_not_"
                          "held_out",
                          "tests/test_views.py::test_inputs_that_do_not_line_up_are_refused"),
                         ("_fit", "macro_auroc", "fit_view_model", "view_metrics")),
    "probe": Target("src/echoclr/probe.py",
                    ("tests/test_probe.py::test_probe_is_sklearns_balanced_logistic_regression_on_"
                     "standardised_features",
                     "tests/test_probe.py::test_c_is_the_best_grouped_cross_validated_auroc",
                     "tests/test_probe.py::test_too_few_studies_of_a_class_fall_back_to_the_"
                     "default_c")),
    "selection": Target("src/echoclr/data/selection.py",
                        ("tests/test_finetune_behaviour.py::test_training_sees_only_the_label_"
                         "fraction",
                         "tests/test_probe.py::test_cross_validation_sees_only_the_drawn_"
                         "training_studies",
                         "tests/test_views_and_splits.py", "tests/test_user_errors.py",
                         "tests/test_selection.py")),
    "transforms": Target("src/echoclr/data/transforms.py",
                         ("tests/test_transforms.py", "tests/test_reorder.py")),
    "datasets": Target("src/echoclr/data/datasets.py",
                       ("tests/test_pairs.py", "tests/test_embed_reference.py"),
                       ("StudyPairDataset", "ClipDataset", "_CacheDataset")),
    "sampling": Target("src/echoclr/data/sampling.py",
                       ("tests/test_distributed_equivalence.py", "tests/test_pairs.py",
                        "tests/test_sampling.py")),
    "class_metrics": Target("src/echoclr/class_metrics.py",
                            ("tests/test_multiclass.py::test_class_metrics_are_sklearns_and_"
                             "their_intervals_a_naive_study_bootstrap",
                             "tests/test_multiclass.py::test_class_metrics_flag_a_class_below_"
                             "ten_studies_and_not_at_ten",
                             "tests/test_multiclass.py::test_class_metrics_flag_few_studies_and_"
                             "leave_out_absent_classes")),
    "categorical": Target("src/echoclr/data/categorical.py",
                          ("tests/test_multiclass.py::test_a_text_column_is_categorical_and_a_"
                           "binary_one_is_not",
                           "tests/test_multiclass.py::test_labels_come_from_view_given_once_a_"
                           "view_model_filled_view",
                           "tests/test_multiclass.py::test_label_fractions_of_studies_are_seeded_"
                           "and_nested",
                           "tests/test_multiclass.py::test_a_class_without_training_videos_is_"
                           "named_before_training",
                           "tests/test_multiclass.py::test_select_videos_keeps_the_labeled_"
                           "videos_of_the_drawn_studies",
                           "tests/test_multiclass.py::test_select_videos_names_the_split_and_"
                           "class_short_of_videos",
                           "tests/test_multiclass.py::test_a_column_of_only_unlabeled_words_is_"
                           "not_categorical")),
}


def module_name(path: str) -> str:
    """``src/echoclr/data/manifest.py`` → ``echoclr.data.manifest``."""
    return ".".join(Path(path).relative_to("src").with_suffix("").parts)


def mutant_patterns(target: Target) -> list[str]:
    """mutmut mutant-name globs for the target's functions (functions: ``x_NAME__mutmut_N``;
    methods: ``xǁCLASSǁMETHOD__mutmut_N``)."""
    module = module_name(target.path)
    patterns = []
    for name in target.functions:
        patterns += [f"{module}.x_{name}__mutmut_*", f"{module}.xǁ{name}ǁ*"]
    return patterns


def prepare(work: Path, target: Target) -> None:
    """A scratch copy of src/, tests/ and pyproject.toml with mutmut's settings appended."""
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "source_paths": ["src"],
        "only_mutate": [target.path],
        "pytest_add_cli_args_test_selection": list(target.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    text = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(text + "\n".join(lines) + "\n")


def run_mutmut(work: Path, target: Target, max_children: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut sets the path
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children),
           *mutant_patterns(target)]
    with open(work / "mutmut.log", "w") as log:
        return subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)


def statuses(work: Path, target: Target) -> dict[str, str]:
    """Status of every checked mutant of the target (mutmut's exit-code table)."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / (target.path + ".meta")).read_text())
    return {name: status_by_exit_code[code]
            for name, code in meta["exit_code_by_key"].items() if code is not None}


def describe(work: Path, target: Target, mutant: str) -> str:
    """``path:line: old -> new`` for one mutant, from ``mutmut show``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    diff = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work, env=env,
                          capture_output=True, text=True).stdout.splitlines()
    old = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    new = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    line = _line_of(target.path, mutant, old[0] if old else "")
    change = " / ".join(s.strip() for s in old) + "  ->  " + " / ".join(s.strip() for s in new)
    return f"{target.path}:{line}: {change}"


def _line_of(path: str, mutant: str, old_line: str) -> int | str:
    """The line of ``old_line`` at or after the start of the mutated function in the original."""
    key = mutant.rsplit(".", 1)[-1].split("__mutmut_")[0]  # x_NAME or xǁCLASSǁMETHOD
    scope, name = (key.split("ǁ")[1:3]) if "ǁ" in key else (None, key.removeprefix("x_"))
    source = (ROOT / path).read_text()
    tree = ast.parse(source)
    if scope is not None:
        tree = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == scope),
                    tree)
    start = next((node.lineno for node in ast.walk(tree)
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.name == name), 1)
    lines = source.splitlines()
    for number in range(start, len(lines) + 1):
        if lines[number - 1] == old_line:
            return number
    return "?"


def report(name: str, target: Target, found: dict[str, str], seconds: float, work: Path) -> None:
    killed = [m for m, s in found.items() if s in KILLED]
    survived = sorted((m for m, s in found.items() if s not in KILLED),
                      key=lambda m: int(m.rsplit("_", 1)[-1]) if m[-1].isdigit() else 0)
    score = 100 * len(killed) / len(found) if found else float("nan")
    scope = f" ({', '.join(target.functions)})" if target.functions else ""
    print(f"\n{name}: {len(killed)} / {len(found)} killed ({score:.1f} %) in {seconds / 60:.1f} min"
          f" — {target.path}{scope}, tests: {' '.join(target.tests)}")
    for mutant in survived:
        print(f"  {found[mutant]:>9}  {describe(work, target, mutant)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS),
                        help="modules to mutate (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--keep", action="store_true", help="keep each module's scratch folder")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    args = parser.parse_args(argv)
    if args.list:
        for name, target in TARGETS.items():
            print(f"{name:13} {target.path}  <-  {' '.join(target.tests)}")
        return 0
    failed = 0
    for name in args.modules:
        target = TARGETS[name]
        work = Path(tempfile.mkdtemp(prefix=f"echoclr-mutation-{name}-"))
        try:
            prepare(work, target)
            tic = time.perf_counter()
            done = run_mutmut(work, target, args.max_children)
            seconds = time.perf_counter() - tic
            if done.returncode != 0:
                tail = (work / "mutmut.log").read_text()[-2000:]
                print(f"\n{name}: mutmut failed (exit {done.returncode}):\n{tail}")
                failed += 1
                continue
            report(name, target, statuses(work, target), seconds, work)
        finally:
            if args.keep:
                print(f"  scratch folder kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
