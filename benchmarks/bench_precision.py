"""Training-step throughput of an encoder under fp32/bf16 and NCDHW/channels_last_3d.

Prints clips/s (median of N timed steps after warm-up, min–max in brackets) for each layout and
precision in the same process, so ratios are comparable on a noisy shared machine. With
``--compile`` it also times ``torch.compile`` of the channels_last_3d model in each precision
(compile time reported separately; the first compiled step is its warm-up); with ``--guard``
channels_last_3d steps through :class:`echoclr.step_guard.StepGuard` (its cost per step).

    python benchmarks/bench_precision.py --encoder r3d_18 --size 112 --clip-len 4 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from echoclr.models import PretrainModel, build_encoder
from echoclr.runs import autocast, cpu_has_fast_bf16
from echoclr.step_guard import StepGuard


def time_steps(model, x, precision, steps, params=None, guarded=False):
    opt = torch.optim.Adam(params if params is not None else model.parameters(), 1e-3)
    guard = StepGuard(model, what="bench", precision=precision) if guarded else None
    times = []
    for i in range(steps + 1):
        tic = time.perf_counter()
        if guard is not None:
            guard.before_forward()
        with autocast(x.device, precision):
            _, z, r = model(x)
        loss = z.float().pow(2).mean() + r.float().mean()
        opt.zero_grad()
        loss.backward()
        if guard is not None:
            guard.step(opt, loss)
        else:
            opt.step()
        if i:  # first step is warm-up
            times.append(time.perf_counter() - tic)
    if not times:
        return None
    rates = [x.shape[0] / t for t in times]
    return statistics.median(rates), min(rates), max(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="r3d_18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--clip-len", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--guard", action="store_true",
                   help="also time channels_last_3d steps through echoclr.step_guard")
    args = p.parse_args()
    print(f"device {args.device}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"fast CPU bf16 (AMX/AVX512-bf16): {cpu_has_fast_bf16()}; threads "
          f"{torch.get_num_threads()}")
    print(f"{args.encoder} {args.clip_len}x{args.size}x{args.size}, batch {args.batch}")
    layouts = (("ncdhw", "channels_last_3d") + (("compiled",) if args.compile else ())
               + (("guarded",) if args.guard else ()))
    for layout in layouts:
        for precision in args.precisions:
            torch.manual_seed(0)
            fmt = torch.channels_last_3d if layout != "ncdhw" else torch.contiguous_format
            model = PretrainModel(build_encoder(args.encoder, width=args.width), n_orderings=24)
            model = model.to(args.device, memory_format=fmt)
            x = torch.rand(args.batch, 3, args.clip_len, args.size, args.size, device=args.device)
            x = x.contiguous(memory_format=fmt)
            params = list(model.parameters())
            if layout == "compiled":
                model = torch.compile(model)
                tic = time.perf_counter()
                time_steps(model, x, precision, 0, params)  # compiles forward and backward
                print(f"  compile time      {precision}: {time.perf_counter() - tic:.1f} s")
            med, lo, hi = time_steps(model, x, precision, args.steps, params,
                                     guarded=layout == "guarded")
            print(f"  {layout:17s} {precision}: {med:7.1f} clips/s  [{lo:.1f}-{hi:.1f}]")


if __name__ == "__main__":
    main()
