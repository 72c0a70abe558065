"""End-to-end pretraining throughput: echoclr against a reference-style pipeline, same run.

The reference reproduces the paper code's approach: every item decodes its whole AVI with
OpenCV, converts to gray, pads and crops with numpy and rotates frame by frame with
``scipy.ndimage.rotate``, then trains in fp32 NCDHW. echoclr reads clips from the memory-mapped
cache, augments the batch in one ``grid_sample`` and trains in channels_last_3d with
``--precision auto``. Same model (r3d_18 by default), batch of positive pairs and clip size.
Also prints the loader alone and the model step alone, in clips/s (median [min–max]).

    python benchmarks/bench_pretrain.py --patients 12 --steps 4 --batch 8 --size 112
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _bench import rate, run_steps, synthetic_cache  # benchmarks/_bench.py
from torch.utils.data import DataLoader, Dataset

from echoclr.data.cache import VideoCache
from echoclr.data.datasets import StudyPairDataset
from echoclr.data.transforms import augment_clips, minmax_scale, permute_frames, to_model_input
from echoclr.losses import nt_xent, reorder_loss
from echoclr.models import PretrainModel, build_encoder
from echoclr.runs import autocast, resolve_precision


class ReferenceDataset(Dataset):
    """The paper code's per-item work: whole-AVI decode, numpy pad/crop, per-frame rotation."""

    def __init__(self, paths: list[Path], clip_len: int, period: int, size: int, seed: int = 0):
        self.paths, self.clip_len, self.period, self.size = paths, clip_len, period, size
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.paths)

    def _load(self, path):
        import cv2

        cap = cv2.VideoCapture(str(path))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY),
                                     (self.size, self.size), interpolation=cv2.INTER_AREA))
        return np.stack(frames).astype(np.float32)

    def _clip(self, video):
        from scipy import ndimage

        span = (self.clip_len - 1) * self.period + 1
        start = int(self.rng.integers(0, max(1, len(video) - span + 1)))
        clip = video[np.minimum(start + self.period * np.arange(self.clip_len), len(video) - 1)]
        clip = (clip - clip.min()) / max(clip.max() - clip.min(), 1e-6)
        padded = np.pad(clip, ((0, 0), (8, 8), (8, 8)))
        y, x = self.rng.integers(0, 17, 2)
        clip = padded[:, y:y + self.size, x:x + self.size]
        if self.rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        if self.rng.random() < 0.5:
            angle = int(self.rng.integers(-10, 11))
            clip = np.stack([ndimage.rotate(f, angle, reshape=False) for f in clip])
        return torch.from_numpy(np.ascontiguousarray(clip))

    def __getitem__(self, index):
        video = self._load(self.paths[index])
        return {"clip_a": self._clip(video), "clip_b": self._clip(video)}


def make_step(model, optimizer, *, echoclr: bool, device, precision):
    g = torch.Generator().manual_seed(0)

    def step(batch):
        clips = torch.cat([batch["clip_a"], batch["clip_b"]]).to(device)
        if echoclr:
            clips = augment_clips(minmax_scale(clips), generator=g)
        perm = torch.randint(0, 24, (clips.shape[0],), generator=g)
        clips = permute_frames(clips.float(), perm)
        x = to_model_input(clips) if echoclr else clips.unsqueeze(1).expand(-1, 3, -1, -1, -1)
        with autocast(device, precision):
            _, z, logits = model(x.contiguous() if not echoclr else x)
        b = clips.shape[0] // 2
        loss = nt_xent(z[:b], z[b:]) + reorder_loss(logits, perm)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=12)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--encoder", default="r3d_18")
    p.add_argument("--width", type=int, default=16, help="r3d_tiny width")
    p.add_argument("--batch", type=int, default=8, help="positive pairs per step")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader-batches", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    precision = resolve_precision("auto", device)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cache(tmp, patients=args.patients, size=args.size, workers=args.workers)
        cache = VideoCache(f"{tmp}/cache")
        rows = cache.rows()
        print(f"device {device}, precision {precision}, {args.encoder} 4x{args.size}x{args.size},"
              f" {args.batch} pairs/step ({2 * args.batch} clips), {len(rows)} videos")
        clips = 2 * args.batch
        results = {}
        for name in ("reference", "echoclr"):
            torch.manual_seed(0)
            echo = name == "echoclr"
            fmt = torch.channels_last_3d if echo else torch.contiguous_format
            model = PretrainModel(build_encoder(args.encoder, width=args.width), n_orderings=24).to(
                device, memory_format=fmt)
            opt = torch.optim.Adam(model.parameters(), 1e-3)
            if echo:
                ds = StudyPairDataset(cache, rows, clip_len=4, period=1, pairs="all")
            else:
                ds = ReferenceDataset([Path(tmp) / "cohort" / s for s in rows["source"]], 4, 1,
                                      args.size)
            loader = DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                                num_workers=args.workers, persistent_workers=True)
            step = make_step(model, opt, echoclr=echo, device=device,
                             precision=precision if echo else "fp32")
            results[name] = run_steps(loader, step, args.steps)
            batch = next(iter(loader))
            # Loader alone: a fresh loader drained for many batches, so the prefetch buffer
            # (workers x prefetch_factor batches) is a small part of the measurement.
            fresh = DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                               num_workers=args.workers)
            loader_times = run_steps(fresh, lambda b: None, args.loader_batches)
            model_times = run_steps([batch] * (args.steps + 1), step, args.steps)
            print(f"{name:10s} end-to-end {rate(results[name], clips)} | loader alone "
                  f"{rate(loader_times, clips)} | model step alone {rate(model_times, clips)}")
        ratio = statistics.median(results["reference"]) / statistics.median(results["echoclr"])
        print(f"echoclr / reference end-to-end: {ratio:.1f}x")


if __name__ == "__main__":
    main()
