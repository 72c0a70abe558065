"""Fine-tuning and evaluation throughput on echoclr's own code paths.

Fine-tuning: clips/s of the training step end to end, as ``finetune.py`` runs it: the training
rows ``select_rows`` picks, ``ClipDataset`` (one random clip per video, memory-mapped) through a
DataLoader, min-max scaling and the batched augmentation, the ``Classifier`` in channels_last_3d
under ``--precision`` (``auto``: bf16 on GPUs and AMX CPUs, else fp32), class-weighted smoothed
BCE, Adam step. Also the loader alone and the model step alone (the same batch again), and the
cost a non-persistent loader pays at every epoch boundary: spawning its workers before the first
batch and shutting them down at the end (median [min–max] over ``--epoch-starts``); finetune.py
keeps its workers, so it pays this once.

Evaluation: videos/s and clips/s of ``inference.predict_videos`` (what ``echoclr evaluate`` and
the per-epoch validation call) with ``--eval-clips`` evenly spaced clips per video (paper: 4),
over every cached PLAX video, once with ``workers=0`` as evaluate runs it and once with
``--workers`` loader processes.

Data: a synthetic cohort ingested into a cache in a temporary folder. Figures are median
[min–max] over the timed steps (each after one warm-up) or ``--eval-repeats`` passes. The paper
setting is r3d_18 on 16x112x112 clips (batch 88; smaller here so a CPU finishes):

    PYTHONPATH=src python benchmarks/bench_finetune.py --encoder r3d_18 --size 112 --clip-len 16 \\
        --batch 8 --steps 4
    PYTHONPATH=src python benchmarks/bench_finetune.py --encoder r3d_tiny --size 48   # quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _bench import rate, run_steps, summary, synthetic_cache  # benchmarks/_bench.py
from torch.utils.data import DataLoader

from echoclr.commands.finetune import FinetuneConfig, build_classifier
from echoclr.data.selection import select_rows
from echoclr.data.cache import VideoCache
from echoclr.data.datasets import ClipDataset
from echoclr.finetuning import train_step
from echoclr.inference import predict_videos
from echoclr.runs import resolve_precision


def make_step(model, optimizer, cfg: FinetuneConfig, device, pos_weight, generator):
    """finetune.py's own training step (full fine-tuning, no frozen encoder)."""
    return lambda batch: train_step(model, optimizer, batch, cfg, device=device,
                                    pos_weight=pos_weight, generator=generator)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=12, help="synthetic studies (2-5 PLAX each)")
    p.add_argument("--size", type=int, default=112, help="cached frame side, pixels")
    p.add_argument("--encoder", default="r3d_18")
    p.add_argument("--width", type=int, default=16, help="r3d_tiny width")
    p.add_argument("--clip-len", type=int, default=16, help="frames per clip (paper: 16)")
    p.add_argument("--batch", type=int, default=8, help="videos per step (paper: 88)")
    p.add_argument("--steps", type=int, default=4, help="timed training steps")
    p.add_argument("--workers", type=int, default=2, help="data-loader processes")
    p.add_argument("--loader-batches", type=int, default=20, help="batches timed, loader alone")
    p.add_argument("--epoch-starts", type=int, default=3, help="epoch starts timed")
    p.add_argument("--eval-clips", type=int, default=4, help="clips per video at test time")
    p.add_argument("--eval-batch", type=int, default=32, help="videos per forward (evaluate's)")
    p.add_argument("--eval-repeats", type=int, default=3, help="timed passes over the videos")
    p.add_argument("--task", default="lvh", help="label column: lvh | severe_as")
    p.add_argument("--precision", default="auto", help="auto | bf16 | fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cache(tmp, patients=args.patients, size=args.size, workers=args.workers)
        cfg = FinetuneConfig(cache=f"{tmp}/cache", task=args.task, encoder=args.encoder,
                             width=args.width, clip_len=args.clip_len, batch_size=args.batch,
                             precision=precision, workers=args.workers, eval_clips=args.eval_clips)
        cache = VideoCache(cfg.cache)
        train, _ = select_rows(cache, task=cfg.task, fraction=cfg.fraction,
                               fraction_seed=cfg.fraction_seed, view=cfg.view)
        labels = train.drop_duplicates("study_id")[cfg.task].astype(float)
        pos_weight = float((1 - labels).sum() / max(labels.sum(), 1))

        torch.manual_seed(cfg.seed)
        model, _ = build_classifier(cfg)
        model = model.to(device, memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(cfg.seed)
        dataset = ClipDataset(cache, train, clip_len=cfg.clip_len, period=cfg.period,
                              label=cfg.task, seed=cfg.seed)
        batch_size = min(cfg.batch_size, len(dataset))
        print(f"device {device}, precision {precision}, {args.encoder} "
              f"{args.clip_len}x{args.size}x{args.size}, {batch_size} videos/step, "
              f"{len(train)} training videos, {args.workers} workers, "
              f"{torch.get_num_threads()} threads")

        # As finetune.py's loader, but with persistent workers and full batches so the timed
        # steps are steady state (epoch starts are timed on their own below).
        def loader(persistent=True, shuffle_generator=None):
            return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                              generator=shuffle_generator, num_workers=args.workers,
                              drop_last=True, persistent_workers=persistent and args.workers > 0)

        model.train()
        step = make_step(model, optimizer, cfg, device, pos_weight, g)
        end_to_end = run_steps(loader(shuffle_generator=g), step, args.steps)
        batch = next(iter(loader(persistent=False)))
        loader_times = run_steps(loader(), lambda b: None, args.loader_batches)
        model_times = run_steps([batch] * (args.steps + 1), step, args.steps)
        print(f"fine-tune  end-to-end {rate(end_to_end, batch_size)} | loader alone "
              f"{rate(loader_times, batch_size)} | model step alone "
              f"{rate(model_times, batch_size)}")
        starts = []
        epoch_loader = loader(persistent=False)  # a non-persistent loader: workers spawn every epoch
        for _ in range(args.epoch_starts):
            tic = time.perf_counter()
            next(iter(epoch_loader))  # the iterator is freed here: its workers shut down
            starts.append(time.perf_counter() - tic)
        print(f"fine-tune  epoch start+end (spawn {args.workers} workers, first batch, shut down) "
              f"{statistics.median(starts):.2f} s [{min(starts):.2f}-{max(starts):.2f}]")

        rows = cache.rows(None, cfg.view)
        rows = rows[rows[cfg.task].notna()]
        n_clips = len(rows) * args.eval_clips
        for workers in dict.fromkeys((0, args.workers)):  # 0: as evaluate and validation run
            times = []
            for _ in range(args.eval_repeats + 1):  # the first pass is warm-up
                tic = time.perf_counter()
                predict_videos(model, cache, rows, label=cfg.task, clip_len=cfg.clip_len,
                               period=cfg.period, clips=args.eval_clips,
                               batch_size=args.eval_batch, device=device, precision=precision,
                               workers=workers)
                times.append(time.perf_counter() - tic)
            times = times[1:]
            note = " (as evaluate)" if workers == 0 else ""
            print(f"evaluate   {len(rows)} videos x {args.eval_clips} clips, workers={workers}"
                  f"{note}: {summary([len(rows) / t for t in times], 'videos/s')} | "
                  f"{summary([n_clips / t for t in times], 'clips/s')}")


if __name__ == "__main__":
    main()
