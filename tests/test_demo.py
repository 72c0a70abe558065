"""`echoclr demo` end to end with the small CI preset (same code paths as the full demo)."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from echoclr.cli import main


def test_demo_ci_preset_leaves_report_and_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--preset", "demo_ci"]) == 0
    report = (out / "experiment" / "report.md").read_text()
    assert report.index("## Verdict") < report.index("## lvh — test")
    assert "## severe_as — test" in report
    assert "| echoclr | probe |" in report and "| random | finetune |" in report
    assert (out / "experiment" / "label_efficiency.png").stat().st_size > 1000
    results = pd.read_csv(out / "experiment" / "results.csv")
    # per task: 50 % — 3 probe draws x 2 inits + 2 draws x (finetune x 2 inits + lpft echoclr);
    # 100 % — one draw of the same 5 cells
    assert len(results) == 2 * (3 * 2 + 2 * 3 + 5)
    assert set(results["init"]) == {"random", "echoclr"}
    pooled = pd.read_csv(out / "experiment" / "pooled.csv")
    assert {"p_pooled", "draws_won", "delta_mean"} <= set(pooled.columns)
    assert (pooled["readout"] == "best").sum() == 2 * 2 * 2  # tasks x fractions x inits
    timings = json.loads((out / "timings.json").read_text())
    assert timings["total_s"] > 0
    printed = capsys.readouterr().out
    assert "label_efficiency.png" in printed and "wall time" in printed
    # Re-running finds everything done and does not redo it; a preset given as a TOML file is
    # the same design as the packaged preset it copies.
    stamp = (out / "experiment" / "pretrain" / "echoclr" / "encoder.pt").stat().st_mtime_ns
    copy = tmp_path / "my_preset.toml"
    copy.write_text((resources.files("echoclr") / "configs" / "demo_ci.toml").read_text())
    assert main(["demo", "--out", str(out), "--preset", str(copy)]) == 0
    assert (out / "experiment" / "pretrain" / "echoclr" / "encoder.pt").stat().st_mtime_ns == stamp
