"""Validation AUROC against fine-tuning epochs, per init and learning rate: where the plateau is.

The demo's fine-tuning epochs and learning rate are read off these curves, on the VALIDATION
split of a development cohort (never the test split, never the demo's own cohort): each init
gets the same learning-rate grid, and the epoch count is where every init's curve has flattened
with all labels. Prints one line per (init, lr, fraction): validation study AUROC after each
epoch, its best and the epoch of the best.

    python benchmarks/research/ceilings.py CACHE --encoder RUN/encoder.pt --task severe_as \\
        --lrs 1e-4 1e-3 --fractions 0.2 1.0 --epochs 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from echoclr.commands.finetune import FinetuneConfig, finetune

SMALL = {"encoder": "r3d_tiny", "width": 16, "clip_len": 4, "period": 2}


def curve(cache: str, init: str, task: str, lr: float, fraction: float, epochs: int,
          draw: int, out: Path) -> list[float]:
    """Validation study AUROC after each epoch (no early stopping)."""
    run = out / f"{Path(init).parent.name or init}_{lr:g}_{fraction:g}_{draw}"
    finetune(FinetuneConfig(cache=cache, out=str(run), task=task, init=init, lr=lr,
                            fraction=fraction, fraction_seed=draw, seed=draw, epochs=epochs,
                            patience=epochs, select_on="val_auroc", batch_size=32, val_clips=1,
                            workers=0, progress=False, precision="fp32", **SMALL))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["val_auroc"] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="an ingested development cache (not the demo's)")
    p.add_argument("--encoder", nargs="*", default=[], help="pretraining encoder.pt files")
    p.add_argument("--task", default="severe_as")
    p.add_argument("--lrs", nargs="+", type=float, default=[1e-4, 1e-3])
    p.add_argument("--fractions", nargs="+", type=float, default=[1.0])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--draws", type=int, default=1, help="label draws per fraction below 1")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for init in ["random", *args.encoder]:
            for fraction in args.fractions:
                for lr in args.lrs:
                    for draw in range(args.draws if fraction < 1 else 1):
                        aucs = curve(args.cache, init, args.task, lr, fraction, args.epochs,
                                     draw, Path(tmp))
                        best = max(range(len(aucs)), key=lambda e: aucs[e])
                        name = "random" if init == "random" else Path(init).parent.name
                        print(f"{name:>10} lr {lr:<6g} fraction {fraction:<5g} draw {draw}: "
                              + " ".join(f"{a:.3f}" for a in aucs)
                              + f" | best {aucs[best]:.3f} at epoch {best + 1}", flush=True)


if __name__ == "__main__":
    main()
