"""report.md and label_efficiency.png from an experiment's results (the paper's table shape)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.atomic import atomic_write_text
from echoclr.inits import INITS_WITHOUT_FILE
from echoclr.runs import JsonlLog, machine_description, pick_device, resolve_precision


def mean_sd(values, digits: int = 2) -> str:
    """``"0.71 ± 0.03"``: mean and sample SD (ddof=1) of e.g. seeds; one value prints alone."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_sd needs at least one value")
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def format_ci(d: dict, digits: int = 2) -> str:
    """``"0.72 [0.69, 0.75]"`` from a dict of ``value`` (or ``delta``), ``ci_low``, ``ci_high``."""
    value = d["value"] if "value" in d else d["delta"]
    return f"{value:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def _p_text(p: float) -> str:
    return "—" if p != p else ("< 0.001" if p < 0.001 else f"{p:.3f}")


# Why: the label draws re-run fine-tuning and probes, but a pretrained init's encoder is one
# pretraining run, whose own noise no draw samples. On the demo's seed 6 three pretraining runs
# that differed only in CPU kernels and precision moved EchoCLR's 52-study severe-AS probe from
# 0.671 to 0.726 and its p pooled from 0.176 to 0.018 (docs/findings.md).
ONE_ENCODER = ("‡ One pretrained encoder: p pooled covers the label draws and the test studies, "
               "not the run-to-run noise of pretraining, which one pretraining run cannot "
               "measure; read it as evidence about this encoder, not about the method "
               "(`pretrain_per_draw = true` in the spec gives every draw its own run).")


def verdict_table(pooled: pd.DataFrame, *, one_encoder: bool = True) -> str:
    """Markdown: every init's best readout against the reference's, per task, split, fraction;
    ``one_encoder``: a pretrained init's draws share one pretraining run (rows marked ‡)."""
    best = pooled[(pooled["readout"] == "best") & pooled["versus"].notna()]
    lines = ["| task | split | labeled studies | init (best readout) | AUROC mean ± sd | versus "
             "| ΔAUROC [95 % CI] | draws won | p pooled |", "|---" * 9 + "|"]
    for _, r in best.iterrows():
        ref = pooled[(pooled["task"] == r["task"]) & (pooled["split"] == r["split"])
                     & (pooled["fraction"] == r["fraction"]) & (pooled["readout"] == "best")
                     & pooled["versus"].isna()]
        ref_text = (f"{r['versus']}: {ref['auroc_mean'].iloc[0]:.3f} ± "
                    f"{np.nan_to_num(ref['auroc_sd'].iloc[0]):.3f}") if len(ref) else r["versus"]
        delta = "—" if r["delta_mean"] != r["delta_mean"] else (
            f"{r['delta_mean']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]")
        won = "—" if r["draws_won"] != r["draws_won"] else \
            f"{int(r['draws_won'])}/{int(r['n_compared_draws'])}"
        one_run = r["n_compared_draws"] == 1
        init = f"{r['init']} ({r['chosen']})" + (
            " ‡" if one_encoder and r["init"] not in INITS_WITHOUT_FILE else "")
        lines.append(f"| {r['task']} | {r['split']} | {r['fraction']:.0%} "
                     f"({int(r['n_labeled_studies'])}) | {init} | "
                     f"{r['auroc_mean']:.3f} ± {np.nan_to_num(r['auroc_sd']):.3f} | {ref_text} | "
                     f"{delta} | {won} | {_p_text(r['p_pooled'])}{' †' if one_run else ''} |")
    if (best["n_compared_draws"] == 1).any():
        lines += ["", "† One training run per init: this p covers the test studies only, not "
                      "the run-to-run noise of training, so it overstates the evidence."]
    if one_encoder and (~best["init"].isin(INITS_WITHOUT_FILE)).any():
        lines += ["", ONE_ENCODER]
    return "\n".join(lines)


def readout_table(pooled: pd.DataFrame, task: str, split: str) -> str:
    """Markdown: inits × readouts as rows, label fractions as columns, "mean ± sd (draws)", and
    the pooled p against the reference's same readout."""
    sub = pooled[(pooled["task"] == task) & (pooled["split"] == split)
                 & (pooled["readout"] != "best")]
    fractions = sorted(sub["fraction"].unique())
    heads = [f"{f:.0%} ({int(sub.loc[sub['fraction'] == f, 'n_labeled_studies'].iloc[0])})"
             for f in fractions]
    lines = ["| init | readout | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    for (init, readout), rows in sub.groupby(["init", "readout"], sort=False):
        cells = []
        for f in fractions:
            r = rows[rows["fraction"] == f]
            if r.empty:
                cells.append("—")
                continue
            r = r.iloc[0]
            text = f"{r['auroc_mean']:.3f}"
            if r["n_draws"] > 1:
                text += f" ± {r['auroc_sd']:.3f} ({int(r['n_draws'])})"
            if r["p_pooled"] == r["p_pooled"]:
                text += f", Δ {r['delta_mean']:+.3f} p {_p_text(r['p_pooled'])}"
            cells.append(text)
        lines.append(f"| {init} | {readout} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def precision_of(out: Path, spec) -> str:
    """The precision of each stage: pretraining's as it resolved, the probes', fine-tuning's and
    evaluation's settings resolved on this machine; one word when they all agree."""
    stages = {}
    for config in sorted(Path(out).glob("pretrain/*/config.json")):
        stages["pretraining"] = json.loads(config.read_text()).get("precision_resolved", "?")
        break
    readouts = set(spec.readouts).union(*map(set, spec.readouts_by_init.values()))
    sections = {"probe features": spec.probe if "probe" in readouts else None,
                "fine-tuning": spec.finetune if {"finetune", "lpft"} & readouts else None,
                "evaluation": spec.evaluate}
    for stage, section in sections.items():
        if section is not None:
            device = pick_device(section.get("device", "auto"))
            stages[stage] = resolve_precision(section.get("precision", "auto"), device)
    if len(set(stages.values())) == 1:
        return next(iter(stages.values()))
    return ", ".join(f"{stage} {value}" for stage, value in stages.items())


def skipped_steps(out: Path) -> dict[str, int]:
    """Run folders under ``out`` (pretraining, cells) whose training skipped steps for a
    non-finite loss or gradient (:mod:`echoclr.step_guard`): folder → steps skipped, as the last
    log row that counts them says."""
    found = {}
    for path in sorted(Path(out).rglob("log.jsonl")):
        counts = [row["skipped_steps"] for row in JsonlLog(path).rows() if "skipped_steps" in row]
        if counts and counts[-1]:
            found[path.parent.relative_to(out).as_posix()] = int(counts[-1])
    return found


def skipped_line(out: Path) -> str:
    skipped = skipped_steps(out)
    if not skipped:
        return "Training steps skipped for a non-finite loss or gradient: none."
    runs = ", ".join(f"`{run}` ({n})" for run, n in skipped.items())
    return (f"Training steps skipped for a non-finite loss or gradient (echoclr.step_guard; "
            f"the weights stayed those of the step before), in {len(skipped)} "
            f"run{'s' if len(skipped) > 1 else ''}: {runs}.")


def write_report(spec, results: pd.DataFrame, pooled: pd.DataFrame, out: Path) -> str:
    """Write report.md (the pooled verdict first) and label_efficiency.png; returns the text."""
    from echoclr.plots import plot_label_efficiency
    from echoclr.pooled import METHOD
    from echoclr.verdict import SELECTION_RULE

    per_draw = (["Pretrained inits: one pretraining run per label draw (seed + draw), so p "
                 "pooled holds pretraining's run-to-run noise too.", ""]
                if spec.pretrain_per_draw else [])
    parts = ["# Label-efficiency experiment", "",
             f"Study-level test AUROC over {spec.draws} label draws per fraction (fine-tuning "
             f"readouts: {spec.finetune_draws or spec.draws}; the whole training set is one "
             "draw), every init trained on the same labeled studies at each draw. "
             f"Reference init: `{spec.reference}`. ΔAUROC (mean over the draws) and p pooled: "
             f"{METHOD} (echoclr.pooled). Best readout: {SELECTION_RULE}.", "",
             f"Machine: {machine_description()}; precision {precision_of(out, spec)}.", "",
             skipped_line(out), "", *per_draw]
    if results.empty or pooled.empty:
        parts.append("No finished cells yet.")
    else:
        parts += ["## Verdict: best readout against the reference's best", "",
                  verdict_table(pooled, one_encoder=not spec.pretrain_per_draw), ""]
        for task in spec.tasks:
            for split in spec.splits:
                if ((pooled["task"] == task) & (pooled["split"] == split)).any():
                    parts += [f"## {task} — {split}", "", readout_table(pooled, task, split), ""]
        plot_label_efficiency(results, out / "label_efficiency.png")
        parts += ["![label efficiency](label_efficiency.png)", "",
                  "Every cell's AUROC with its 95 % bootstrap CI over test studies (2.5/97.5 "
                  "percentiles): results.csv; the pooled rows: pooled.csv.", ""]
    markdown = "\n".join(parts)
    atomic_write_text(out / "report.md", markdown)
    return markdown
