"""How much frame-order information a cache's pretraining clips carry, at each frame stride.

Frame reordering (EchoCLR's second objective) can only be learned if a clip's frames can be put
back in order from their content. This measures that without any training: for ``--clips``
random training clips it shuffles the frames, then orders them by a simple rule — the path
through the frames that maximises the summed correlation of neighbours (speckle decorrelates and
walls move with time, so frames close in time correlate more) — and prints how often the rule
recovers the true order exactly (chance 1/clip_len!) and up to reversal (chance 2/clip_len!),
for raw and for augmented clips. A stride whose figures sit near chance gives the reordering
head nothing to learn; a stride with a clear signal can still take a CNN many steps to find.

    PYTHONPATH=src python benchmarks/research/reorder_signal.py CACHE --periods 1 2 3
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from echoclr.data.cache import VideoCache
from echoclr.data.datasets import StudyPairDataset
from echoclr.data.transforms import augment_clips, minmax_scale


def order_by_correlation(frames: np.ndarray) -> tuple[int, ...]:
    """The frame order (a permutation of positions) that maximises neighbour correlation.

    Args:
        frames: (T, H, W) frames in arbitrary order.
    Returns:
        positions in the recovered temporal order (either direction).
    """
    flat = frames.reshape(len(frames), -1)
    corr = np.corrcoef(flat - flat.mean(1, keepdims=True))
    return max(itertools.permutations(range(len(frames))),
               key=lambda q: sum(corr[q[k], q[k + 1]] for k in range(len(q) - 1)))


def recovery_rates(clips: torch.Tensor, rng: np.random.Generator) -> tuple[float, float]:
    """(exact, up-to-reversal) share of (B, T, H, W) clips whose order the rule recovers."""
    exact = either = 0
    for clip in clips.numpy():
        shuffle = rng.permutation(len(clip))  # shuffled[i] = clip[shuffle[i]]
        found = order_by_correlation(clip[shuffle])
        true = tuple(int(i) for i in np.argsort(shuffle))
        exact += found == true
        either += found in (true, true[::-1])
    return exact / len(clips), either / len(clips)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cache", help="folder written by `echoclr ingest`")
    p.add_argument("--periods", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--clip-len", type=int, default=4)
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cache = VideoCache(args.cache)
    rows = cache.rows("train", "PLAX")
    fps = float(rows["fps"].median())
    chance = 1 / np.prod(range(1, args.clip_len + 1))
    print(f"{args.cache}: {len(rows)} training videos, median {fps:g} frames/s; chance "
          f"{chance:.3f} exact, {2 * chance:.3f} up to reversal")
    for period in args.periods:
        ds = StudyPairDataset(cache, rows, clip_len=args.clip_len, period=period, mode="simclr")
        rng = np.random.default_rng(args.seed)
        pick = rng.permutation(len(ds))[:args.clips]
        clips = minmax_scale(torch.stack([ds[int(i)]["clip_a"] for i in pick]).float())
        augmented = augment_clips(clips, generator=torch.Generator().manual_seed(args.seed))
        for name, batch in (("raw", clips), ("augmented", augmented)):
            exact, either = recovery_rates(batch, rng)
            print(f"period {period} ({period / fps * 1000:4.0f} ms between frames) {name:9s}: "
                  f"exact {exact:.3f}, up to reversal {either:.3f}")


if __name__ == "__main__":
    main()
