"""report.md and label_efficiency.png from an experiment's results (the paper's table shape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echoclr.atomic import atomic_write_text


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


def _cell_text(group: pd.DataFrame) -> str:
    """One seed: "AUROC [95 % CI]"; several: "mean ± sd (n seeds)"."""
    if len(group) == 1:
        r = group.iloc[0]
        return format_ci({"value": r["auroc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}, 3)
    return f"{mean_sd(group['auroc'], 3)} ({len(group)} seeds)"


def auroc_table(results: pd.DataFrame, task: str, split: str, inits: list[str]) -> str:
    """Markdown table: inits as rows, label fractions (with n studies) as columns."""
    sub = results[(results["task"] == task) & (results["split"] == split)]
    fractions = sorted(sub["fraction"].unique())
    heads = []
    for f in fractions:
        n = int(sub.loc[sub["fraction"] == f, "n_train_studies"].iloc[0])
        heads.append(f"{f:.0%} ({n})")
    lines = ["| init | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for init in [i for i in inits if i in set(sub["init"])]:
        cells = [_cell_text(sub[(sub["init"] == init) & (sub["fraction"] == f)])
                 if len(sub[(sub["init"] == init) & (sub["fraction"] == f)]) else "—"
                 for f in fractions]
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def delong_table(tests: pd.DataFrame, task: str, split: str, reference: str) -> str:
    sub = tests[(tests["task"] == task) & (tests["split"] == split)] if len(tests) else tests
    if sub.empty:
        return ""
    lines = [f"DeLong test, {reference} against each init (ΔAUROC, p):", "",
             "| versus | fraction | seed | ΔAUROC | p |", "|---|---|---|---|---|"]
    for _, r in sub.sort_values(["versus", "fraction", "seed"]).iterrows():
        p_text = f"{r['p_value']:.3g}" if r["p_value"] == r["p_value"] else f"— ({r['note']})"
        lines.append(f"| {r['versus']} | {r['fraction']:.0%} | {r['seed']} | "
                     f"{r['delta_auroc']:+.3f} | {p_text} |")
    return "\n".join(lines)


def write_report(spec, results: pd.DataFrame, tests: pd.DataFrame, out: Path) -> str:
    """Write report.md and label_efficiency.png into ``out``; returns the markdown."""
    from echoclr.plots import plot_label_efficiency

    parts = ["# Label-efficiency experiment", "",
             "Study-level AUROC on held-out studies with 95 % bootstrap CIs (2.5/97.5 "
             "percentiles over studies); columns are fractions of labeled training studies "
             "(number of studies).", ""]
    if results.empty:
        parts.append("No finished cells yet.")
    for task in spec.tasks:
        for split in spec.splits:
            if results.empty or not ((results["task"] == task) & (results["split"] == split)).any():
                continue
            parts += [f"## {task} — {split}", "", auroc_table(results, task, split,
                                                              list(spec.inits)), ""]
            text = delong_table(tests, task, split, spec.reference)
            if text:
                parts += [text, ""]
    if not results.empty:
        plot_label_efficiency(results, out / "label_efficiency.png")
        parts += ["![label efficiency](label_efficiency.png)", ""]
    markdown = "\n".join(parts)
    atomic_write_text(out / "report.md", markdown)
    return markdown
