"""Echo view classification from a few labeled videos per view: macro AUROC of ``echoclr views``
on a synthetic cohort of three views, for a random encoder and an EchoCLR encoder pretrained on
every view, at a few labeled videos per view.

The workflow a user follows on an archive of mixed views: ingest every view, pretrain on all of
them, label a handful of videos per view, fit the view model, fill the manifest's ``view``
column, select PLAX. Here the cohort's true views play the labels: ``--per-view`` of the
training split's videos per view are fitted on, the labeled validation and test videos not fitted
on measure the model.

    PYTHONPATH=src python benchmarks/bench_views.py [--patients 150] [--steps 250] \\
        [--per-view 3 10] [--out /tmp/bench_views]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from echoclr.commands.ingest import IngestConfig, ingest
from echoclr.commands.pretrain import PretrainConfig, pretrain
from echoclr.commands.synth import synthesize
from echoclr.commands.views import ViewsConfig, views
from echoclr.runs import machine_description
from echoclr.synth.cohort import SynthConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--steps", type=int, default=250, help="pretraining steps")
    parser.add_argument("--per-view", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--out", default="/tmp/bench_views")
    args = parser.parse_args()
    out = Path(args.out)
    t0 = time.perf_counter()
    # every study: 1-2 PLAX videos, an A4C and an A2C half the time each (three views to tell)
    synthesize(SynthConfig(out=str(out / "cohort"), patients=args.patients, size=64,
                           plax_min=1, plax_max=2, other_view_prob=0.5, a2c_prob=0.5,
                           frames_min=30, frames_max=40, fps_min=25, fps_max=50, workers=2))
    ingest(IngestConfig(manifest=str(out / "cohort" / "manifest.csv"), out=str(out / "cache"),
                        size=48, max_frames=32, target_fps=15, salt="bench", workers=2,
                        accept_one_class_splits=True))
    print(f"cohort and cache: {time.perf_counter() - t0:.0f} s")
    encoder = out / "pretrain" / "encoder.pt"
    if not encoder.is_file():
        pretrain(PretrainConfig(cache=str(out / "cache"), out=str(out / "pretrain"),
                                encoder="r3d_tiny", width=8, clip_len=4, period=2, pairs="study",
                                view="all", batch_size=64, max_steps=args.steps, workers=0,
                                progress=False, log_every=50))
    print(f"machine: {machine_description()}; fp32")
    print("| encoder | labeled videos per view | fitted | held-out videos | macro AUROC | "
          "per view (A2C, A4C, PLAX) | accuracy |")
    print("|---|---|---|---|---|---|---|")
    for init in ("random", str(encoder)):
        for per_view in args.per_view:
            run = out / f"views_{Path(init).stem}_{per_view}"
            views(ViewsConfig(cache=str(out / "cache"), out=str(run), init=init,
                              encoder="r3d_tiny", width=8, per_view=per_view, clip_len=4,
                              period=2, clips=2, features=str(out / "features"),
                              precision="fp32", device="cpu"))
            m = json.loads((run / "metrics.json").read_text())
            per = ", ".join(f"{a:.3f}" for a in m["per_view_auroc"].values())
            name = "random" if init == "random" else "EchoCLR (all views)"
            print(f"| {name} | {per_view} | {m['n_fit_videos']} | {m['n_videos']} | "
                  f"{m['macro_auroc']:.3f} | {per} | {m['accuracy']:.3f} |")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
