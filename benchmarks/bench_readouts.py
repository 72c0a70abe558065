"""Seconds per probe cell against seconds per fine-tuning cell of the label-efficiency experiment.

Builds a small synthetic cohort and cache (or takes ``--cache``), pretrains a small EchoCLR
encoder, runs the experiment with the probe and fine-tuning readouts at one label fraction and
prints, per readout, the mean and median seconds of a cell (train + evaluate, from each cell's
done.json) and their ratio. A probe cell's first draw also pays for the encoder's features (once
per encoder and cache); the line "first probe cell" shows it apart.

    python benchmarks/bench_readouts.py                      # ~3 min on 2 CPU cores
    python benchmarks/bench_readouts.py --cache CACHE --draws 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from echoclr.commands.experiment import ExperimentSpec, run_spec
from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.synth import synthesize
from echoclr.synth.cohort import SynthConfig

SMALL = {"encoder": "r3d_tiny", "width": 16, "clip_len": 4, "period": 2}


def build_cache(root: Path, patients: int) -> Path:
    synthesize(SynthConfig(out=str(root / "cohort"), patients=patients, size=64, fps_min=25,
                           fps_max=50, frames_min=30, frames_max=60, plax_max=3, workers=2))
    ingest(IngestConfig(manifest=str(root / "cohort" / "manifest.csv"), out=str(root / "cache"),
                        size=48, max_frames=32, target_fps=15, view="PLAX", workers=2,
                        stratify="lvh,severe_as", splits=(0.5, 0.15, 0.35)))
    return root / "cache"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", help="an ingested cache (default: a new synthetic one)")
    p.add_argument("--patients", type=int, default=200, help="cohort size when building one")
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--pretrain-steps", type=int, default=30)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = Path(args.cache) if args.cache else build_cache(root, args.patients)
        spec = ExperimentSpec.from_dict({
            "cache": str(cache), "tasks": ["severe_as"], "fractions": [args.fraction],
            "draws": args.draws, "inits": ["random", "echoclr"],
            "readouts": ["probe", "finetune"],
            "pretrain": SMALL | {"batch_size": 32, "max_steps": args.pretrain_steps,
                                 "workers": 1, "progress": False, "pairs": "study"},
            "probe": SMALL, "evaluate": {"clips": 2, "n_resamples": 200},
            "finetune": SMALL | {"batch_size": 32, "epochs": args.epochs, "patience": 4,
                                 "lr": 1e-3, "select_on": "val_auroc", "val_clips": 1,
                                 "workers": 0, "progress": False}}, source="bench_readouts")
        run_spec(spec, root / "experiment")
        cells = [json.loads(f.read_text())
                 for f in sorted((root / "experiment").glob("*/*/*/*/done.json"))]
    seconds = {r: [c["seconds"] for c in cells if c["readout"] == r and
                   not (r == "probe" and c["draw"] == 0)] for r in ("probe", "finetune")}
    first = [c["seconds"] for c in cells if c["readout"] == "probe" and c["draw"] == 0]
    for readout, values in seconds.items():
        print(f"{readout:>9} cell: mean {np.mean(values):6.2f} s, median {np.median(values):6.2f} s "
              f"({len(values)} cells)")
    print(f"first probe cell (features computed): mean {np.mean(first):.2f} s ({len(first)})")
    ratio = np.median(seconds["finetune"]) / np.median(seconds["probe"])
    print(f"fine-tuning / probe, median seconds per cell: {ratio:.1f}x")


if __name__ == "__main__":
    main()
